//! Headless Chromium for the console's tests: Debian's `chromedriver` on a
//! free loopback port, driven through WebDriver by `fantoccini`, and plain
//! HTTP for what a browser would not send.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Chromedriver and the browser session, ended when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where screenshots go.
    pub shots: PathBuf,
    /// `http://host:port` of the berth under test.
    pub base: String,
}

/// Whether the browser tests run: they fail without Chromium unless
/// skipped on purpose (`BERTH_SKIP_BROWSER=1`).
pub fn browser_wanted() -> bool {
    if std::env::var_os("BERTH_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("BERTH_SKIP_BROWSER=1: the console's browser tests are skipped");
        return false;
    }
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The screenshots' folder: `ui-screenshots` in cargo's target directory.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

impl Browser {
    /// Chromedriver and a fresh headless Chromium with its own profile.
    pub async fn start(base: &str) -> Browser {
        let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the console's browser tests need Debian's \
                 chromium and chromium-driver (`apt-get install chromium chromium-driver`, \
                 as .ci/run does), or BERTH_SKIP_BROWSER=1 to skip them on purpose"
            )
        });
        let chromium = find_program(&["chromium", "chromium-browser"]).unwrap_or_else(|| {
            panic!(
                "chromium is not installed (apt-get install chromium), or set BERTH_SKIP_BROWSER=1"
            )
        });
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1360,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
            shots: screenshot_dir(),
            base: base.to_owned(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    /// The page's text, for failure messages.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    /// Saves a PNG of the page as `name.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// The element `css` once present, within `secs`; else a screenshot
    /// and the page's text in the panic.
    pub async fn wait(&self, css: &str, what: &str, secs: u64) -> Element {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(secs))
            .every(Duration::from_millis(200))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(e) => e,
            Err(e) => {
                let shot = self
                    .screenshot(&format!("failed-{}", what.replace(' ', "-")))
                    .await;
                panic!(
                    "{what}: `{css}` never appeared within {secs}s ({e}); screenshot {}; the page says:\n{}",
                    shot.display(),
                    self.text().await
                );
            }
        }
    }

    /// Clicks `css` once present; again if a live redraw replaced it
    /// between finding and clicking.
    pub async fn click(&self, css: &str, what: &str) {
        let mut tries = 0;
        loop {
            match self.wait(css, what, 30).await.click().await {
                Ok(()) => return,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("clicking {what} again: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("clicking {what} (`{css}`): {e}"),
            }
        }
    }

    pub async fn close(self) {
        let Browser {
            client, mut driver, ..
        } = self;
        let _ = client.close().await;
        let _ = driver.kill();
        let _ = driver.wait();
    }
}

/// One HTTP/1.1 request with `headers`: (status, headers, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("berth listens");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}
