//! Local stand-ins for the services lambda-deployer talks to: a Kubernetes API server with real semantics
//! ([`kube`]), and AWS = moto plus a Lambda fidelity and fault layer ([`aws`]). Dev-only: the product never
//! depends on this crate.

pub mod apiserver;
pub mod aws;
pub mod identity;
pub mod moto;
pub mod up;
