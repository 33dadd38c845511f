//! The operator's HTTP endpoints as a test reads them: the address its log says an
//! endpoint is served on, a plain GET, and a Prometheus sample's value.

use std::{net::SocketAddr, time::Duration};

/// The address `log` says `what` (`/metrics`, `/healthz and /readyz`) is served on.
pub fn served_address(log: &str, what: &str) -> Option<SocketAddr> {
    let marker = format!("serving {what} on http://");
    let at = log.find(&marker)? + marker.len();
    let address: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    address.parse().ok()
}

/// A minimal HTTP/1.0 GET (status code and body); status 0 when nothing answers.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
            return (0, String::new());
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .is_err()
        {
            return (0, String::new());
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .expect("the request task")
}

/// The sum of every sample of `name` (any labels) in Prometheus/OpenMetrics text.
pub fn sample_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
