//! lambda-deployer: deploys Lambda functions declared as `LambdaDeployment` resources in a Kubernetes cluster.
//!
//! Decide / act / observe: [`trigger`] decodes what woke us; adapters observe and act on S3 ([`artifact`]),
//! Lambda ([`function`]) and the cluster ([`cluster`], [`resources`]); [`plan`] decides, purely; [`report`] turns
//! outcomes into status and Events; [`deployer`] runs the loop.

pub mod arn;
pub mod artifact;
pub mod aws;
pub mod cluster;
pub mod config;
pub mod crd;
pub mod deployer;
pub mod error;
pub mod function;
pub mod key;
pub mod plan;
pub mod report;
pub mod resources;
pub mod trigger;

pub use error::{Error, Result};
