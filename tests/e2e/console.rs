//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini) against the stack's `pipeline-console`. Screenshots of each page
//! go to `target/console-screenshots/` in the checkout.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use huleedu_contracts::topics;
use huleedu_it::stack::free_port;
use huleedu_it::unique;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::ctx::{Ctx, Submitted, T};

type R = anyhow::Result<()>;

/// Where the screenshots go.
fn shots_dir() -> PathBuf {
    huleedu_contracts::checkout_root().join("target/console-screenshots")
}

/// chromedriver on a free port, and a headless Chromium session on it.
struct Browser {
    client: Client,
    _driver: Child,
}

async fn browser() -> anyhow::Result<Browser> {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context(
            "starting chromedriver (Debian's chromium-driver package; scripts/test.sh installs it)",
        )?;
    let mut caps = serde_json::Map::new();
    let chromium = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .ok_or_else(|| {
        anyhow!("no Chromium found (Debian's chromium package; scripts/test.sh installs it)")
    })?;
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--window-size=1280,1400", "--lang=en-US"]}),
    );
    let start = Instant::now();
    let client = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow!("no WebDriver session within 30 s: {e}")),
        }
    };
    Ok(Browser {
        client,
        _driver: driver,
    })
}

async fn shot(c: &Client, name: &str) -> R {
    let png = c.screenshot().await?;
    std::fs::create_dir_all(shots_dir())?;
    std::fs::write(shots_dir().join(format!("{name}.png")), png)?;
    Ok(())
}

/// Fill the form `form` (CSS selector) field by field (name → value) and submit it; the text of
/// the page it lands on.
async fn submit_form(c: &Client, form: &str, fields: &[(&str, &str)]) -> anyhow::Result<String> {
    let f = c
        .form(Locator::Css(form))
        .await
        .with_context(|| format!("form {form}"))?;
    for (name, value) in fields {
        f.set_by_name(name, value)
            .await
            .with_context(|| format!("field {name}"))?;
    }
    f.submit().await?;
    // The result page (every action answers with one: done, or the refusal). Wait for it, not
    // for an element the form's own page has too: the click may return before the browser has
    // left that page.
    c.wait()
        .at_most(T)
        .for_element(Locator::Css("main p.done, main p.problem"))
        .await
        .with_context(|| format!("the result page of {form}"))?;
    Ok(c.find(Locator::Css("main")).await?.text().await?)
}

/// Hostile text: it must reach the pages as text, never as markup.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The console, driven like an operator would: the batch is listed, its timeline shows executed
/// and skipped phases, a mark and a retry go through the forms (not without the token), a poison
/// record is re-driven once and a second re-drive is refused; hostile strings stay text; a POST
/// from another origin is refused.
pub async fn s21_console_in_a_browser(c: Arc<Ctx>) -> R {
    ensure!(!c.console.is_empty(), "the stack runs no console");
    let b = unique("s21");
    let failed = format!("{b}-e02");
    c.register(&b, 4, json!({"spellcheck": [failed]}), &[])
        .await?;
    let first = c.request(&b, "cj_assessment").await?;
    let t = c.terminal(first).await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");
    let second = c.request(&b, "nlp").await?;
    let t = c.terminal(second).await?;
    ensure!(list(&t, "skipped_phases") == ["spellcheck"], "{t}");
    let poison = format!("{{not json {HOSTILE} {b}");
    c.publish_raw(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        &b,
        poison.clone().into_bytes(),
    )
    .await?;

    let br = browser().await?;
    let w = &br.client;
    let r = drive(&c, w, &b, &failed, &poison).await;
    if r.is_err() {
        let _ = shot(w, "failure").await;
    }
    let _ = br.client.clone().close().await;
    r
}

fn list(v: &Value, key: &str) -> Vec<String> {
    crate::ctx::list(v, key)
}

async fn drive(c: &Ctx, w: &Client, b: &str, failed: &str, poison: &str) -> R {
    let console = c.console.as_str();
    // Batches: the batch is listed, with a link to its page (other scenarios of the stack run
    // at the same time: follow the pages, newest first, until it shows).
    w.goto(&format!("{console}/batches")).await?;
    let row_at = Locator::Css(&format!("tr[data-batch='{b}']"));
    let mut pages = 1;
    let row = loop {
        w.wait()
            .at_most(T)
            .for_element(Locator::Css("main h1"))
            .await?;
        if let Ok(row) = w.find(row_at).await {
            break row;
        }
        match w.find(Locator::Css("a.next")).await {
            Ok(next) if pages < 20 => {
                next.click().await?;
                pages += 1;
            }
            _ => return Err(anyhow!("{b} is not listed on the first {pages} page(s)")),
        }
    };
    ensure!(
        row.text().await?.contains("nlp completed_successfully"),
        "{}",
        row.text().await?
    );
    shot(w, "1-batches").await?;
    row.find(Locator::Css("a")).await?.click().await?;

    // Batch: two pipelines; nlp's timeline shows spellcheck skipped and nlp executed.
    w.wait().for_element(Locator::Css("section.lane")).await?;
    let lanes = w.find_all(Locator::Css("section.lane")).await?;
    ensure!(lanes.len() == 2, "two pipelines drawn: {}", lanes.len());
    w.find(Locator::Css(
        "section.lane[data-pipeline='nlp'] g.bar-skipped[data-phase='spellcheck']",
    ))
    .await
    .context("nlp's timeline marks spellcheck skipped")?;
    w.find(Locator::Css(
        "section.lane[data-pipeline='nlp'] g.bar-ok[data-phase='nlp']",
    ))
    .await
    .context("nlp's timeline shows nlp executed")?;
    w.find(Locator::Css(
        "section.lane[data-pipeline='cj_assessment'] g.bar-partial[data-phase='spellcheck']",
    ))
    .await
    .context("cj's timeline shows spellcheck with failures")?;
    let results = w
        .find(Locator::Css("table.results tr[data-phase='spellcheck']"))
        .await?
        .text()
        .await?;
    ensure!(
        results.contains(failed),
        "the failed essay is listed: {results}"
    );
    shot(w, "2-batch").await?;

    // A mark with a wrong token is refused and records nothing.
    let page = submit_form(
        w,
        "form[action='/actions/mark']",
        &[
            ("phase", "nlp"),
            ("mark", "invalidate"),
            ("reason", "wrong token"),
            ("operator", "e2e"),
            ("token", "not-the-token"),
        ],
    )
    .await?;
    ensure!(
        page.contains("401"),
        "refused without the right token: {page}"
    );
    let recs = c.bcs_phases(b).await?;
    ensure!(
        recs["phases"]["nlp"]["source"] != "operator",
        "nothing recorded: {recs}"
    );

    // A mark with the token (the operator's name hostile).
    w.goto(&format!("{console}/batches/{b}")).await?;
    let page = submit_form(
        w,
        "form[action='/actions/mark']",
        &[
            ("phase", "nlp"),
            ("mark", "invalidate"),
            ("reason", "checked by hand"),
            ("operator", HOSTILE),
            ("token", c.token()),
        ],
    )
    .await?;
    ensure!(page.contains("recorded not completed"), "{page}");
    shot(w, "3-mark").await?;
    let recs = c.bcs_phases(b).await?;
    ensure!(
        recs["phases"]["nlp"]["source"] == "operator"
            && recs["phases"]["nlp"]["status"] == "failed"
            && recs["phases"]["nlp"]["operator"] == HOSTILE,
        "the conductor recorded the mark: {recs}"
    );
    w.goto(&format!("{console}/batches/{b}")).await?;
    let source = w.source().await?;
    ensure!(
        !source.contains(HOSTILE),
        "the operator's name is escaped on the page"
    );
    ensure!(
        source.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "and shown as text"
    );

    // Retry spellcheck for its failed essay (the worker no longer fails it).
    c.overrides(b, json!({}), &[]).await?;
    let page = submit_form(
        w,
        "form[action='/actions/retry']",
        &[
            ("phase", "spellcheck"),
            ("reason", "spellchecker fixed"),
            ("operator", "e2e"),
            ("token", c.token()),
        ],
    )
    .await?;
    ensure!(page.contains("Retry of spellcheck queued"), "{page}");
    shot(w, "4-retry").await?;
    let correlation: Uuid = page
        .split("correlation id ")
        .nth(1)
        .and_then(|r| r.get(..36))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| anyhow!("no correlation id on the page: {page}"))?;
    let t = c
        .terminal(Submitted {
            correlation_id: correlation,
        })
        .await?;
    ensure!(
        t["final_status"] == "completed_successfully" && t["successful_essay_count"] == 1,
        "{t}"
    );

    // Dead letters: the poison record, shown as text; re-driven once, refused the second time.
    let dlq = topics::dlq_topic(topics::CLIENT_BATCH_PIPELINE_REQUEST);
    let start = Instant::now();
    let section = loop {
        w.goto(&format!("{console}/dead-letters?batch={b}")).await?;
        match w
            .find(Locator::Css(&format!("section.poison[data-dlq^='{dlq}/']")))
            .await
        {
            Ok(s) => break s,
            Err(_) if start.elapsed() < T => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(anyhow!("the poison record is not listed: {e}")),
        }
    };
    let text = section.text().await?;
    ensure!(text.contains("decode"), "{text}");
    let source = w.source().await?;
    ensure!(!source.contains(HOSTILE), "the payload preview is escaped");
    shot(w, "5-dead-letters").await?;
    let at = section.attr("data-dlq").await?.unwrap_or_default();
    let form = format!("section.poison[data-dlq='{at}'] form");
    let page = submit_form(
        w,
        &form,
        &[
            ("reason", "producer fixed"),
            ("operator", "e2e"),
            ("token", c.token()),
        ],
    )
    .await?;
    ensure!(page.contains("re-driven to"), "{page}");
    shot(w, "6-redrive").await?;
    w.goto(&format!("{console}/dead-letters?batch={b}")).await?;
    let page = submit_form(
        w,
        &form,
        &[
            ("reason", "again"),
            ("operator", "someone-else"),
            ("token", c.token()),
        ],
    )
    .await?;
    ensure!(
        page.contains("409")
            && page.contains("already_redriven")
            && page.contains("by e2e (published: producer fixed)"),
        "a second re-drive is refused, saying by whom: {page}"
    );
    shot(w, "7-redrive-refused").await?;
    let back = c
        .reader
        .wait_for(T, "the re-driven message", |all| {
            all.iter().any(|m| {
                m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST
                    && m.payload == poison.as_bytes()
                    && m.header("redrive.operator") == Some("e2e")
            })
        })
        .await;
    ensure!(
        back.iter()
            .filter(|m| m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST
                && m.payload == poison.as_bytes())
            .count()
            == 2,
        "the original and one re-drive"
    );

    // A form posted from another site is refused (the Origin check), whatever it carries.
    let r = c
        .http
        .post(format!("{console}/actions/mark"))
        .header("origin", "http://evil.example")
        .form(&[
            ("batch", b),
            ("phase", "nlp"),
            ("mark", "complete"),
            ("reason", "csrf"),
            ("operator", "evil"),
            ("token", c.token()),
        ])
        .send()
        .await?;
    ensure!(
        r.status().as_u16() == 403,
        "cross-site POST refused: {}",
        r.status()
    );
    let recs = c.bcs_phases(b).await?;
    ensure!(
        recs["phases"]["nlp"]["operator"] == HOSTILE,
        "nothing recorded: {recs}"
    );
    Ok(())
}
