//! Replays the cargo-fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz target bodies on the stable toolchain,
//! so every input the fuzzer kept (and every hostile fixture seeded into it) is re-checked by `cargo test`.

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod fuzz_bodies;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} has no inputs", dir.display());
    inputs
}

/// Runs `body` over every input, naming the input that broke the contract.
fn replay(target: &str, body: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        if let Err(panic) = std::panic::catch_unwind(|| body(&bytes)) {
            let message = panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied());
            panic!("{target} broke its contract on {}: {}", path.display(), message.unwrap_or("(no message)"));
        }
    }
}

#[test]
fn decode_payload_corpus_decodes_to_triggers_or_bounded_payload_errors() {
    replay("decode_payload", fuzz_bodies::decode_payload);
}

#[test]
fn parse_key_corpus_names_valid_artifacts_or_says_why_not() {
    replay("parse_key", fuzz_bodies::parse_key);
}
