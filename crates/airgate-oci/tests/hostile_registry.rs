//! The registry client against a hostile registry.
//!
//! A real registry does not misbehave on request, so these tests stand up a
//! small HTTP server on 127.0.0.1 that answers the way the security review's
//! malicious registry did: error bodies that cut a character in two,
//! manifests that never end, a token realm that asks for the credentials in
//! the clear on another host, an upload Location on another host. Each test
//! is named after the behaviour it pins down. The happy paths are tested
//! against the perimeter's real registries (`crates/airgate/tests`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airgate_oci::auth::{Credential, Credentials};
use airgate_oci::{RegistryClient, RegistryError, RegistryOptions};

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// What the server answers: status line, headers, then a body written by
/// the closure (which may write forever; the client must hang up).
type Answer = Box<dyn Fn(&Seen, &mut TcpStream) + Send + Sync>;

struct Hostile {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    fn start(answer: Answer) -> std::io::Result<Hostile> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let log = log.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let Some(request) = read_request(&stream) else {
                        return;
                    };
                    if let Ok(mut l) = log.lock() {
                        l.push(request.clone());
                    }
                    answer(&request, &mut stream);
                });
            }
        });
        Ok(Hostile { port, seen })
    }

    fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    Some(Seen {
        path,
        authorization,
    })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn client(registry: &str, credentials: Credentials) -> Result<RegistryClient, RegistryError> {
    RegistryClient::new(RegistryOptions {
        insecure: vec![registry.to_string()],
        ca_files: vec![],
        credentials,
        attempts: 1,
        ..RegistryOptions::default()
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[test]
fn an_error_body_with_a_multibyte_character_at_the_cut_does_not_panic()
-> Result<(), Box<dyn std::error::Error>> {
    let server = Hostile::start(Box::new(|seen, s| {
        if seen.path == "/v2/" {
            return respond(s, "200 OK", &[], b"{}");
        }
        let body = format!("{}é{}", "a".repeat(299), "\u{1b}]0;owned\u{7}".repeat(100));
        respond(s, "400 Bad Request", &[], body.as_bytes());
    }))?;
    let client = client(&server.registry(), Credentials::default())?;
    let result = runtime()?.block_on(client.get_manifest(&server.registry(), "a/b", "v1"));
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("HTTP 400"), "{message}");
    assert!(!message.contains('\u{1b}'), "escape printed raw: {message}");
    assert!(message.len() < 1000, "{} bytes", message.len());
    Ok(())
}

#[test]
fn a_manifest_larger_than_four_mebibytes_is_refused_without_reading_it()
-> Result<(), Box<dyn std::error::Error>> {
    // Says 2 GiB, then streams zeros for as long as anyone reads.
    let server = Hostile::start(Box::new(|seen, s| {
        if seen.path == "/v2/" {
            return respond(s, "200 OK", &[], b"{}");
        }
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 2147483648\r\n\r\n";
        let _ = s.write_all(head.as_bytes());
        let zeros = [b' '; 65536];
        while s.write_all(&zeros).is_ok() {}
    }))?;
    let client = client(&server.registry(), Credentials::default())?;
    let result = runtime()?.block_on(client.get_manifest(&server.registry(), "a/b", "v1"));
    assert!(
        matches!(result, Err(RegistryError::TooLarge { .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn an_endless_chunked_manifest_is_cut_off_at_the_limit() -> Result<(), Box<dyn std::error::Error>> {
    let server = Hostile::start(Box::new(|seen, s| {
        if seen.path == "/v2/" {
            return respond(s, "200 OK", &[], b"{}");
        }
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = s.write_all(head.as_bytes());
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(65536));
        while s.write_all(chunk.as_bytes()).is_ok() {}
    }))?;
    let client = client(&server.registry(), Credentials::default())?;
    let result = runtime()?.block_on(client.get_manifest(&server.registry(), "a/b", "v1"));
    assert!(
        matches!(result, Err(RegistryError::TooLarge { .. })),
        "{result:?}"
    );
    Ok(())
}

/// `0.0.0.0` is not a loopback name, yet a connection to it reaches this
/// machine: the test sees whether the credential would have left in the
/// clear, without sending anything off the machine.
#[test]
fn credentials_are_not_sent_over_plain_http_to_a_realm_on_another_host()
-> Result<(), Box<dyn std::error::Error>> {
    let port = Arc::new(Mutex::new(0u16));
    let realm_port = port.clone();
    let server = Hostile::start(Box::new(move |seen, s| {
        let p = realm_port.lock().map(|p| *p).unwrap_or_default();
        if seen.path == "/v2/" && seen.authorization.is_none() {
            let challenge = format!("Bearer realm=\"http://0.0.0.0:{p}/token\",service=\"r\"");
            return respond(
                s,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge)],
                b"",
            );
        }
        if seen.path.starts_with("/token") {
            return respond(s, "200 OK", &[], br#"{"token":"t"}"#);
        }
        respond(s, "404 Not Found", &[], b"")
    }))?;
    *port.lock().map_err(|_| "lock")? = server.port;
    let mut credentials = Credentials::default();
    credentials.insert(
        &server.registry(),
        Credential {
            username: "user".into(),
            password: "secret-password".into(),
        },
    );
    let client = client(&server.registry(), credentials)?;
    let result = runtime()?.block_on(client.get_manifest(&server.registry(), "a/b", "v1"));
    assert!(
        matches!(result, Err(RegistryError::PlainCredentials { .. })),
        "{result:?}"
    );
    let leaked = server
        .seen()
        .iter()
        .any(|s| s.path.starts_with("/token") && s.authorization.is_some());
    assert!(!leaked, "the credential was sent to the realm in the clear");
    Ok(())
}

#[test]
fn an_upload_location_on_another_host_over_plain_http_is_refused()
-> Result<(), Box<dyn std::error::Error>> {
    let server = Hostile::start(Box::new(|seen, s| {
        if seen.path == "/v2/" {
            return respond(s, "200 OK", &[], b"{}");
        }
        if seen.path.contains("/blobs/uploads/") {
            let location = ("Location", "http://0.0.0.0:9/steal".to_string());
            return respond(s, "202 Accepted", &[location], b"");
        }
        respond(s, "404 Not Found", &[], b"")
    }))?;
    let client = client(&server.registry(), Credentials::default())?;
    let digest = airgate_core::Digest::of(b"x");
    let result = runtime()?.block_on(client.mount_blob(&server.registry(), "a/b", &digest, "c/d"));
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("another host"), "{message}");
    Ok(())
}
