//! libFuzzer entry point: any bytes as a cluster file, through parse, validation and render.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kubeha_fuzz::check_cluster_file(data);
});
