//! `/v1/model` shows what each adapter's `metrics.json` records (the one typed record,
//! `lamoda_inference::AdapterMetrics`): a shipped record's figures, nothing for an adapter
//! without one, and nothing (the server still starts) for an unreadable one.

mod common;

use lamoda_inference::AdapterMetrics;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_shows_each_adapters_recorded_figures() {
    let f = common::fixture();
    // shoes: the shipped record; bags: an unreadable one; the others: none.
    let shipped = common::root().join("adapters/shoes");
    std::fs::copy(
        AdapterMetrics::path(&shipped),
        AdapterMetrics::path(&f.bundle.join("shoes")),
    )
    .expect("copy metrics.json");
    std::fs::write(
        AdapterMetrics::path(&f.bundle.join("bags")),
        r#"{"n_train": "many"}"#,
    )
    .expect("write");
    let recorded = AdapterMetrics::read(&shipped).expect("shipped record");

    let (server, url) = common::start(common::config(&f)).await;
    let model: Value = reqwest::get(format!("{url}/v1/model"))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let adapter = |name: &str| {
        model["adapters"]
            .as_array()
            .expect("adapters")
            .iter()
            .find(|a| a["category"] == name)
            .cloned()
            .expect("adapter")
    };
    let shoes = adapter("shoes");
    let tuned = recorded.tuned.as_ref().expect("tuned");
    let careful = recorded.careful_dev().expect("careful dev");
    assert_eq!(shoes["dev_micro_f1"], json!(tuned.micro_f1));
    assert_eq!(shoes["prior_micro_f1"], json!(recorded.prior.micro_f1));
    assert_eq!(shoes["n_train"], json!(recorded.n_train));
    assert_eq!(shoes["n_dev"], json!(recorded.n_dev));
    assert_eq!(shoes["careful_precision"], json!(careful.precision));
    assert_eq!(shoes["careful_recall"], json!(careful.recall));
    assert_eq!(shoes["careful_micro_f1"], json!(careful.micro_f1));
    for name in ["bags", "accs"] {
        let a = adapter(name);
        for field in [
            "dev_micro_f1",
            "prior_micro_f1",
            "n_train",
            "careful_precision",
        ] {
            assert_eq!(a[field], Value::Null, "{name}.{field}");
        }
    }
    server.stop().await.expect("stop");
}
