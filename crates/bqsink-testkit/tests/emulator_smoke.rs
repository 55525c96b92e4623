//! Boots a real bqemulator (installed by `cargo xtask emulator install`), talks raw HTTP to it,
//! and checks that stopping it closes its ports.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bqsink_testkit::Emulator;

/// A minimal HTTP/1.1 exchange: returns (status, body).
fn http(host: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(host).expect("connect to the REST port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let status =
        head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn accepts(host: &str) -> bool {
    let addr: SocketAddr = host.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn emulator_answers_creates_datasets_and_stops() {
    let started = Instant::now();
    let emulator = Emulator::start().expect("start bqemulator");
    eprintln!(
        "bqemulator ready in {:.2?}: REST {} gRPC {} log {}",
        started.elapsed(),
        emulator.rest_url(),
        emulator.grpc_host(),
        emulator.log_path().display()
    );
    let rest = emulator.rest_host();
    let grpc = emulator.grpc_host();
    assert_eq!(emulator.rest_url(), format!("http://{rest}"));
    assert!(emulator.log_path().is_file());

    let (status, body) = http(&rest, "GET", "/bigquery/v2/projects/p/datasets", None);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON dataset list");
    let count = list.get("datasets").and_then(|d| d.as_array()).map_or(0, Vec::len);
    assert_eq!(count, 0, "a fresh emulator has no datasets: {body}");

    let create = r#"{"datasetReference":{"projectId":"p","datasetId":"d"}}"#;
    let (status, body) = http(&rest, "POST", "/bigquery/v2/projects/p/datasets", Some(create));
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("JSON dataset");
    assert_eq!(created["datasetReference"]["datasetId"], "d", "{body}");

    let (status, body) = http(&rest, "POST", "/bigquery/v2/projects/p/datasets", Some(create));
    assert_eq!(status, 409, "a second insert of the same dataset conflicts: {body}");

    let (status, body) = http(&rest, "GET", "/bigquery/v2/projects/p/datasets", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""d""#), "the list shows the new dataset: {body}");

    assert!(accepts(&grpc), "the gRPC port accepts connections");

    let stopping = Instant::now();
    emulator.stop();
    eprintln!("bqemulator stopped in {:.2?}", stopping.elapsed());
    assert!(!accepts(&rest), "the REST port is closed after stop");
    assert!(!accepts(&grpc), "the gRPC port is closed after stop");
}

#[test]
fn two_emulators_are_independent() {
    let a = Emulator::start().expect("start the first bqemulator");
    let b = Emulator::start().expect("start the second bqemulator");
    assert_ne!(a.rest_host(), b.rest_host());
    assert_ne!(a.grpc_host(), b.grpc_host());
    assert_ne!(a.log_path(), b.log_path());
    let create = r#"{"datasetReference":{"projectId":"p","datasetId":"only_in_a"}}"#;
    let (status, body) = http(&a.rest_host(), "POST", "/bigquery/v2/projects/p/datasets", Some(create));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&b.rest_host(), "GET", "/bigquery/v2/projects/p/datasets", None);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("only_in_a"), "b does not see a's dataset: {body}");
    let rest_b = b.rest_host();
    drop(b);
    assert!(!accepts(&rest_b), "drop stops the emulator");
    a.stop();
}
