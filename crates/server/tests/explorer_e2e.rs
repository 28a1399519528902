//! The explorer in headless Chromium, driven over WebDriver (chromedriver) as a person
//! would use it, on the shipped bundle and the reference product table: filter by good
//! type, search, open a product, see its tags with mentions and the evidence highlighted,
//! move the threshold (re-decoded without a reload), show the dataset's tags, tag one's
//! own text; and, on the tiny fixture bundle, a reviewer working through the review queue
//! with the keyboard. Screenshots at desktop and phone width go to `target/e2e/`.
//!
//! Needs `chromedriver` and `chromium` (Debian's `chromium-driver` and `chromium`; or
//! `CHROMEDRIVER` / `CHROMIUM`); the explorer's test also the base in `models/e5-small` and
//! `LAMODA_DATA`. Without them a test skips with a note, unless `LAMODA_REQUIRE_BROWSER=1`
//! (CI), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
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

/// chromedriver and chromium, or why the tests cannot run.
fn browser_paths() -> Result<(PathBuf, PathBuf), String> {
    let driver = which("CHROMEDRIVER", &["/usr/bin/chromedriver"]).ok_or("no chromedriver")?;
    let browser = which(
        "CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )
    .ok_or("no chromium")?;
    Ok((driver, browser))
}

/// Skips (or, with `LAMODA_REQUIRE_BROWSER=1`, fails) for `why`.
fn skip_or_fail(why: String) {
    if std::env::var("LAMODA_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("LAMODA_REQUIRE_BROWSER=1 but {why}")
    }
    eprintln!("skipped: {why}");
}

/// What the explorer's test needs, or why it cannot run.
fn setup() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let (driver, browser) = browser_paths()?;
    if !common::root()
        .join("models/e5-small/model.safetensors")
        .is_file()
    {
        return Err("no base in models/e5-small (lamoda-tags fetch-base e5-small)".into());
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

/// The text of the element `id`, read again when the page replaced it meanwhile (a
/// navigation that had not finished when the element was found).
async fn text_of(c: &fantoccini::Client, id: &str) -> String {
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Id(id)).await
            && let Ok(text) = e.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("#{id} could not be read");
}

/// Starts chromedriver and a headless Chromium session on it.
async fn session(driver: &Path, browser: &Path) -> (Driver, fantoccini::Client) {
    let port = free_port();
    let process = Driver(
        Command::new(driver)
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
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (process, c),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no WebDriver session");
}

/// Presses `key` on whatever has the focus, as a keyboard does.
async fn press(c: &fantoccini::Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.expect("press a key");
}

/// At phone width the page must not scroll sideways; saves it as `dir/name`, then goes
/// back to desktop width.
async fn at_phone_width(c: &fantoccini::Client, dir: &Path, name: &str) {
    c.set_window_size(390, 1200).await.expect("phone width");
    let wide = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .expect("scroll width");
    let url = c.current_url().await.expect("url");
    assert_eq!(wide, json!(false), "{url} scrolls sideways at phone width");
    shot(c, dir, name).await;
    c.set_window_size(1280, 1400).await.expect("desktop width");
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
        Err(why) => return skip_or_fail(why),
    };
    let mut config = lamoda_server::ServerConfig::local(common::root().join("adapters"));
    config.products = Some(table);
    let (server, url) = common::start(config).await;

    let (_driver, c) = session(&driver, &browser).await;
    let shots = common::root().join("target/e2e");
    std::fs::create_dir_all(&shots).expect("target/e2e");
    let wait = Duration::from_secs(90);

    // The product list: filter by good type, then search.
    c.goto(&url).await.expect("open /");
    let all = text_of(&c, "count").await;
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
    let shoes = text_of(&c, "count").await;
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
    let found = text_of(&c, "count").await;
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
    at_phone_width(&c, &shots, "explorer-phone.png").await;

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

/// The `data-sku` of the product under review once it is one of `category` (by its meta
/// line, `… → accs · …`; any when empty) other than `previous`.
async fn product_under_review(
    c: &fantoccini::Client,
    category: &str,
    previous: Option<&str>,
) -> String {
    for _ in 0..600 {
        let sku = c
            .execute(
                "const s = document.getElementById('review-product');
                 const meta = document.getElementById('review-meta').textContent;
                 return s.hidden || !document.querySelector('#review-tags li')
                     || (arguments[0] && !meta.includes('→ ' + arguments[0] + ' ·'))
                     ? null : s.dataset.sku;",
                vec![json!(category)],
            )
            .await
            .expect("script");
        if let Some(sku) = sku.as_str()
            && Some(sku) != previous
        {
            return sku.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{category}` product to review after {previous:?}");
}

/// The verdicts shown on the suggested tags, in order.
async fn verdicts(c: &fantoccini::Client) -> Vec<String> {
    let v = c
        .execute(
            "return [...document.querySelectorAll('#review-tags li.tag')].map(li => li.dataset.verdict);",
            vec![],
        )
        .await
        .expect("script");
    serde_json::from_value(v).expect("strings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_works_through_the_queue_with_the_keyboard() {
    let (driver, browser) = match browser_paths() {
        Ok(found) => found,
        Err(why) => return skip_or_fail(why),
    };
    let f = common::fixture();
    let mut config = common::config(&f);
    config.reviews_db = Some(f.dir.path().join("reviews.sqlite"));
    let (server, url) = common::start(config).await;
    let (_driver, c) = session(&driver, &browser).await;
    let shots = common::root().join("target/e2e");
    std::fs::create_dir_all(&shots).expect("target/e2e");

    c.goto(&format!("{url}/review"))
        .await
        .expect("open /review");
    let name = c.find(Locator::Id("reviewer")).await.expect("reviewer");
    name.send_keys("Вера").await.expect("type the name");
    c.find(Locator::Id("review-category"))
        .await
        .expect("category")
        .select_by_value("accs")
        .await
        .expect("choose accs");
    let first = product_under_review(&c, "accs", None).await;
    // Leave the form with Escape, then judge with the keyboard only.
    c.execute(
        "document.getElementById('review-category').focus();",
        vec![],
    )
    .await
    .expect("focus");
    press(&c, '\u{E00C}').await;
    let n = verdicts(&c).await.len();
    assert!(n >= 2, "the fixture suggests several tags, got {n}");
    press(&c, 'a').await;
    press(&c, 'r').await;
    let shown = verdicts(&c).await;
    assert_eq!(&shown[..2], ["accepted", "rejected"], "{shown:?}");
    // Saving with a tag undecided is refused on the page.
    press(&c, '\u{E007}').await;
    let status = text_of(&c, "status").await;
    assert!(status.contains("every suggested tag"), "{status}");
    press(&c, 'A').await;
    shot(&c, &shots, "review-queue.png").await;
    press(&c, '\u{E007}').await;
    let second = product_under_review(&c, "accs", Some(&first)).await;
    press(&c, 'R').await;
    c.find(Locator::Id("review-missing"))
        .await
        .expect("missing")
        .send_keys("Мягкая кожа")
        .await
        .expect("type");
    press(&c, '\u{E007}').await;
    let third = product_under_review(&c, "accs", Some(&second)).await;
    assert_ne!(third, first);

    // Phone width: nothing scrolls sideways.
    at_phone_width(&c, &shots, "review-phone.png").await;

    // After a reload: the two are done, the name is remembered, the queue moved on.
    c.refresh().await.expect("reload");
    let mut progress = String::new();
    for _ in 0..600 {
        progress = text_of(&c, "progress").await;
        if progress.contains("accs 2 done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(progress.contains("accs 2 done · 119 left"), "{progress}");
    let remembered = c
        .find(Locator::Id("reviewer"))
        .await
        .expect("reviewer")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(remembered.as_deref(), Some("Вера"));
    let done = text_of(&c, "review-done").await;
    assert!(done.contains(&first) && done.contains(&second), "{done}");
    let next = product_under_review(&c, "", None).await;
    assert!(next != first && next != second);

    // What the server kept.
    let client = reqwest::Client::new();
    let kept: serde_json::Value = client
        .get(format!("{url}/v1/reviews"))
        .query(&[("sku", first.as_str())])
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let j = &kept["judgments"][0];
    assert_eq!(j["reviewer"], "Вера");
    assert_eq!(j["rejected"].as_array().map(Vec::len), Some(1), "{kept}");
    assert_eq!(
        j["accepted"].as_array().map(Vec::len),
        Some(n - 1),
        "{kept}"
    );
    let kept: serde_json::Value = client
        .get(format!("{url}/v1/reviews"))
        .query(&[("sku", second.as_str())])
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(kept["judgments"][0]["missing"], json!(["Мягкая кожа"]));
    assert_eq!(kept["judgments"][0]["accepted"], json!([]));

    c.close().await.expect("close the browser");
    server.stop().await.expect("stop");
}
