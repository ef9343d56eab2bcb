//! Prints the LambdaDeployment CRD (`make crds` writes it to crds/lambdadeployment.yaml).
fn main() {
    print!("{}", lambda_deployer::crd::crd_yaml());
}
