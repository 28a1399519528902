//! The explorer in headless Chromium, driven over WebDriver (chromedriver) as a person
//! would use it, on the shipped bundle and the reference product table: filter by good
//! type, search, open a product, see its tags with mentions and the evidence highlighted,
//! move the threshold (re-decoded without a reload), show the dataset's tags, tag one's
//! own text; screenshots at desktop and phone width go to `target/e2e/`.
//!
//! Needs `chromedriver` and `chromium` (Debian's `chromium-driver` and `chromium`; or
//! `CHROMEDRIVER` / `CHROMIUM`), the base in `models/e5-small` and `LAMODA_DATA`. Without
//! them it skips with a note, unless `LAMODA_REQUIRE_BROWSER=1` (CI), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// What the test needs, or why it cannot run.
fn setup() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let driver = which("CHROMEDRIVER", &["/usr/bin/chromedriver"]).ok_or("no chromedriver")?;
    let browser = which(
        "CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )
    .ok_or("no chromium")?;
    if !common::root()
        .join("models/e5-small/model.safetensors")
        .is_file()
    {
        return Err("no base in models/e5-small (cargo xtask fetch-base e5-small)".into());
    }
    let data = std::env::var_os("LAMODA_DATA").ok_or("LAMODA_DATA is not set")?;
    let table = Path::new(&data).join("reviews_sampled_with_pull_tags.csv");
    if !table.is_file() {
        return Err(format!("no {}", table.display()));
    }
    Ok((driver, browser, table))
}

/// Waits until the page's URL holds `part` and the new page is loaded (a click on a link
/// or a form's button does not wait for the navigation it starts).
async fn until_url(c: &fantoccini::Client, part: &str) {
    for _ in 0..600 {
        let url = c.current_url().await.expect("url");
        if url.as_str().contains(part) {
            let ready = c
                .execute("return document.readyState === 'complete';", vec![])
                .await
                .expect("readyState");
            if ready == json!(true) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page never reached a URL with {part:?}");
}

/// Saves a screenshot of the page as `dir/name`.
async fn shot(c: &fantoccini::Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).expect("write the screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_explorer() {
    let (driver, browser, table) = match setup() {
        Ok(found) => found,
        Err(why) if std::env::var("LAMODA_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("LAMODA_REQUIRE_BROWSER=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let mut config = lamoda_server::ServerConfig::local(common::root().join("adapters"));
    config.products = Some(table);
    let (server, url) = common::start(config).await;

    let port = free_port();
    let _driver = Driver(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let caps = json!({
        "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"],
        }
    });
    let caps = caps.as_object().cloned().expect("object");
    let mut browser = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                browser = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = browser.expect("a WebDriver session");
    let shots = common::root().join("target/e2e");
    std::fs::create_dir_all(&shots).expect("target/e2e");
    let wait = Duration::from_secs(90);

    // The product list: filter by good type, then search.
    c.goto(&url).await.expect("open /");
    let count = c.find(Locator::Id("count")).await.expect("count");
    let all = count.text().await.expect("text");
    assert!(all.contains("2321 products"), "{all}");
    c.find(Locator::Id("good-type"))
        .await
        .expect("filter")
        .select_by_value("Shoes")
        .await
        .expect("choose Shoes");
    c.find(Locator::Css("#filters button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    until_url(&c, "good_type=Shoes").await;
    let shoes = c
        .find(Locator::Id("count"))
        .await
        .expect("count")
        .text()
        .await
        .expect("text");
    assert!(shoes.starts_with("160 products"), "{shoes}");
    let search = c.find(Locator::Id("search")).await.expect("search");
    search.send_keys("кроссовки").await.expect("type");
    c.find(Locator::Css("#filters button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    until_url(&c, "q=").await;
    let found = c
        .find(Locator::Id("count"))
        .await
        .expect("count")
        .text()
        .await
        .expect("text");
    assert!(
        !found.starts_with("0 products") && found != shoes,
        "{found}"
    );
    let names = c
        .find_all(Locator::Css("#products tbody tr td[data-label=Name]"))
        .await
        .expect("rows");
    assert!(!names.is_empty());
    for name in &names {
        let text = name.text().await.expect("name").to_lowercase();
        assert!(text.contains("кроссовки"), "{text}");
    }

    // A product: its tags with mentions, the evidence highlighted.
    c.find(Locator::Css("#products a.sku"))
        .await
        .expect("first product")
        .click()
        .await
        .expect("open");
    let first_tag = c
        .wait()
        .at_most(wait)
        .for_element(Locator::Css("#tags li.tag"))
        .await
        .expect("tags");
    assert!(!first_tag.text().await.expect("tag").is_empty());
    let tags = c
        .find_all(Locator::Css("#tags li.tag .mentions"))
        .await
        .expect("mentions");
    assert!(!tags.is_empty());
    for t in &tags {
        assert!(t.text().await.expect("mentions").contains("mention"));
    }
    let evidence = c
        .find_all(Locator::Css("#reviews li.evidence .mark"))
        .await
        .expect("marks");
    assert!(!evidence.is_empty(), "no review is highlighted as evidence");
    let status = c
        .find(Locator::Id("status"))
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    assert!(status.contains("tuned threshold"), "{status}");
    let n_before = tags.len();
    shot(&c, &shots, "explorer-product.png").await;

    // Move the threshold up with the keyboard, as a person would: fewer (or as many) tags,
    // re-decoded in place.
    c.execute("window.stillHere = 1;", vec![])
        .await
        .expect("mark the page");
    let slider = c.find(Locator::Id("threshold")).await.expect("slider");
    slider.click().await.expect("focus slider");
    for _ in 0..40 {
        slider.send_keys("\u{E014}").await.expect("arrow right");
    }
    c.wait()
        .at_most(wait)
        .for_element(Locator::XPath(
            "//p[@id='status'][contains(., 'threshold 0.9')]",
        ))
        .await
        .expect("re-decoded at the new threshold");
    let n_after = c
        .find_all(Locator::Css("#tags li.tag"))
        .await
        .expect("tags")
        .len();
    assert!(
        n_after <= n_before,
        "{n_after} tags at a higher threshold, {n_before} before"
    );
    let same_page = c
        .execute("return window.stillHere === 1;", vec![])
        .await
        .expect("check");
    assert_eq!(same_page, json!(true), "the page reloaded");

    // The dataset's own tags: hidden until toggled.
    let dataset = c
        .find(Locator::Id("dataset-tags"))
        .await
        .expect("dataset tags");
    assert!(!dataset.is_displayed().await.expect("displayed"));
    c.find(Locator::Id("dataset-toggle"))
        .await
        .expect("toggle")
        .click()
        .await
        .expect("toggle");
    assert!(dataset.is_displayed().await.expect("displayed"));
    shot(&c, &shots, "explorer-product-dataset.png").await;

    // Phone width.
    c.set_window_size(390, 1200).await.expect("phone width");
    let wide = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .expect("scroll width");
    assert_eq!(
        wide,
        json!(false),
        "the product page scrolls sideways at phone width"
    );
    shot(&c, &shots, "explorer-phone.png").await;
    c.set_window_size(1280, 1400).await.expect("desktop width");

    // One's own text.
    c.goto(&format!("{url}/tag")).await.expect("open /tag");
    c.find(Locator::Id("own-good-type"))
        .await
        .expect("good type")
        .select_by_value("Shoes")
        .await
        .expect("Shoes");
    c.find(Locator::Id("own-text"))
        .await
        .expect("text")
        .send_keys("Очень лёгкие и удобные кроссовки\nМаломерят на размер, берите больше")
        .await
        .expect("type");
    c.find(Locator::Id("own-submit"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("tag");
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css("#tags li.tag"))
        .await
        .expect("own tags");
    let own: Vec<String> = {
        let mut names = Vec::new();
        for e in c
            .find_all(Locator::Css("#tags li.tag .name"))
            .await
            .expect("names")
        {
            names.push(e.text().await.expect("name"));
        }
        names
    };
    assert!(
        own.iter()
            .any(|t| t == "Маломерят" || t == "Лёгкие" || t == "Удобные"),
        "{own:?}"
    );
    let marks = c
        .find_all(Locator::Css("#reviews li.evidence"))
        .await
        .expect("evidence");
    assert!(!marks.is_empty(), "own reviews are highlighted as evidence");
    shot(&c, &shots, "explorer-own-text.png").await;

    c.close().await.expect("close the browser");
    server.stop().await.expect("stop");
    eprintln!("screenshots in {}", shots.display());
}
