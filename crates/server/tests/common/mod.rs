//! A tiny bundle for every category with the shipped pools and routing (adapters whose
//! head gives fixed probabilities, so every exclusive group is contested), a small product
//! table, and a server started on localhost.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use lamoda_data::{Category, EtalonPool};
use lamoda_model::{default_device, load_hf_dir};
use lamoda_server::{RunningServer, ServerConfig};
use lamoda_testkit::{bundle_tiny, write_fixed_adapter, write_tiny_base};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A written fixture.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub products: PathBuf,
}

/// Per pool tag: 0.95, 0.92, … down to 0.05, so many tags pass 0.5 and the exclusive
/// groups must choose.
pub fn fixed_probabilities(n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.95 - 0.03 * i as f32).max(0.05)).collect()
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base_dir = dir.path().join("base");
    write_tiny_base(&base_dir, 7).expect("tiny base");
    let base = load_hf_dir(&base_dir, &default_device()).expect("load tiny base");
    let bundle = dir.path().join("adapters");
    let pools: Vec<EtalonPool> = Category::ALL
        .iter()
        .map(|&c| EtalonPool::load(&root().join("etalon_tags"), c).expect("shipped pool"))
        .collect();
    for pool in &pools {
        write_fixed_adapter(&base, &bundle, pool, &fixed_probabilities(pool.len()), None)
            .expect("fixed adapter");
    }
    let routing =
        std::fs::read_to_string(root().join("configs/routing.toml")).expect("shipped routing");
    let refs: Vec<&EtalonPool> = pools.iter().collect();
    bundle_tiny(&bundle, &base, &routing, &refs).expect("bundle");
    let products = dir.path().join("products.csv");
    let mut csv =
        String::from("product_sku,comment_id,comment_text,name,good_type,good_subtype,tags\n");
    let rows = [
        (
            "SKU-SHOE-1",
            "Кроссовки беговые",
            "Shoes",
            "SPORT SHOES",
            r#"["Легкие и удобные", "Маломерят на размер", "Отличные"]"#,
            "Удобные; Лёгкие",
        ),
        (
            "SKU-BAG-1",
            "Сумка кожаная",
            "Bags",
            "BAGS",
            r#"["Вместительная", "Кожа приятная"]"#,
            "Вместительная",
        ),
        (
            "SKU-TOY-1",
            "Мягкая игрушка",
            "Toys",
            "TOYS",
            r#"["Ребенок доволен"]"#,
            "",
        ),
    ];
    for (sku, name, good_type, subtype, reviews, tags) in rows {
        let n = serde_json::from_str::<Vec<String>>(reviews)
            .expect("reviews")
            .len();
        let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        csv.push_str(&format!(
            "{sku},\"[{}]\",\"{}\",{name},{good_type},{subtype},{tags}\n",
            ids.join(", "),
            reviews.replace('"', "\"\"")
        ));
    }
    for i in 0..120 {
        csv.push_str(&format!(
            "SKU-ACC-{i:03},\"[1]\",\"[\"\"Хороший ремень {i}\"\"]\",Ремень {i},Accs,BELTS,\n"
        ));
    }
    std::fs::write(&products, csv).expect("write products");
    Fixture {
        dir,
        bundle,
        products,
    }
}

/// The fixture's settings on a free port of localhost.
pub fn config(f: &Fixture) -> ServerConfig {
    let mut config = ServerConfig::local(f.bundle.clone());
    config.products = Some(f.products.clone());
    config
}

/// Starts a server and waits until /health says it is ready.
pub async fn start(config: ServerConfig) -> (RunningServer, String) {
    let server = lamoda_server::start(config).await.expect("start server");
    let url = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    for _ in 0..600 {
        match client.get(format!("{url}/health")).send().await {
            Ok(r) if r.status() == 200 => return (server, url),
            Ok(_) => {}
            // Refused: the server stopped (it says why).
            Err(_) => break,
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the server did not become ready: {:?}", server.stop().await);
}
