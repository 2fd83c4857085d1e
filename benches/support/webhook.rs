//! Posting Telegram webhooks for the load benchmarks (`channels`, `soak`): a minimal
//! kept-alive HTTP/1.1 client, and waiting until Pryx's Telegram channel takes deliveries.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The webhook secret the benchmarks give Pryx (`X-Telegram-Bot-Api-Secret-Token`).
pub const SECRET: &str = "bench-webhook-secret-0123456789";

/// One kept-alive HTTP/1.1 connection speaking just enough of the protocol to post a webhook
/// and read the status: the load generator shares the two cores with Pryx, so it has to cost
/// far less than what it measures (a full HTTP client costs about as much as the server).
pub struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
    line: String,
}

impl Connection {
    pub async fn open(host: &str) -> Connection {
        let stream = TcpStream::connect(host).await.expect("connect to pryx");
        stream.set_nodelay(true).expect("nodelay");
        Connection { stream: BufReader::new(stream), host: host.to_owned(), line: String::new() }
    }

    /// Post one update; returns the response's status code.
    pub async fn deliver(&mut self, update: &str) -> u16 {
        let request = format!(
            "POST /webhooks/telegram HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {}\r\n\r\n{update}",
            self.host,
            update.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await.expect("send");
        let (mut status, mut length) = (0, 0);
        loop {
            self.line.clear();
            let read = self.stream.read_line(&mut self.line).await.expect("read the response");
            assert!(read > 0, "pryx closed the connection");
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().expect("status code");
            } else if let Some((name, value)) = line.split_once(':') {
                assert!(!name.eq_ignore_ascii_case("transfer-encoding"), "unexpected chunked response");
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("read the body");
        status
    }
}

/// Wait until Pryx at `host` takes webhooks: the webhook answers 503 until the bot is
/// connected (`setWebhook` done); an update without a message is acknowledged and not stored.
pub async fn wait_until_connected(host: &str) {
    let mut connection = Connection::open(host).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while connection.deliver(r#"{"update_id": 1}"#).await != 200 {
        assert!(Instant::now() < deadline, "the Telegram channel did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
