#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lambda_deployer_fuzz::decode_payload(data));
