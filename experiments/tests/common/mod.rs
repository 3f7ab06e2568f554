//! Helpers shared by the integration tests that read a run's run.json.
use std::collections::BTreeMap;

/// Stage name -> (status, key) of a run.json.
pub fn stages(run: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("name"), (f("status"), f("key")))
        })
        .collect()
}
