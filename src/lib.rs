//! lambda-deployer: deploys Lambda functions declared as `LambdaDeployment` resources in a Kubernetes cluster.
//!
//! Decide / act / observe: [`trigger`] decodes what woke us; [`fleet`] finds the LambdaDeployments it concerns and
//! reads in bulk what it can; adapters observe and act on S3 ([`artifact`]), Lambda ([`function`]) and the cluster
//! ([`cluster`], [`resources`]), every call under one retry and deadline policy ([`retry`]); [`plan`] decides,
//! purely; [`reconcile`] runs observe → plan → act for one resource and writes what happened; [`report`] turns
//! outcomes into status and Events, purely, and [`metrics`] the invocation's summary into CloudWatch metrics;
//! [`deployer`] runs an invocation.

pub mod accounts;
pub mod arn;
pub mod artifact;
pub mod aws;
pub mod cluster;
pub mod config;
pub mod crd;
pub mod deployer;
pub mod error;
pub mod fleet;
pub mod function;
pub mod judge;
pub mod key;
pub mod metrics;
pub mod ownership;
pub mod plan;
pub mod reconcile;
pub mod release;
pub mod report;
pub mod resources;
pub mod retry;
pub mod rollout;
pub mod trigger;
pub mod versions;
pub mod wakeup;

pub use error::{Error, Result};
