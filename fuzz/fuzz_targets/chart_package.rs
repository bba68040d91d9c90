//! A chart package as a hostile registry or repository serves it, and a
//! classic repository's index: never a panic, and what is read stays
//! within its budgets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = airgate_render::helm::package_info(data);
    let _ = airgate_render::helm::remote_schema_refs_in_package(data);
    if let Ok(index) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = airgate_core::chart::index_entry(&index, "https://charts.example.com", "shop", "1.0.0");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = airgate_core::chart::nondeterministic(text);
        let _ = airgate_core::chart::repository_chart(text);
        let _ = airgate_core::chart::schema_file(text);
    }
});
