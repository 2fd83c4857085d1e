//! An OTLP/HTTP receiver that accepts and discards spans: the cost of exporting without a
//! real collector's own cost on the same two cores.

/// Start the sink; returns its address (spans go to `http://ADDRESS/v1/traces`).
pub async fn otlp_sink() -> std::net::SocketAddr {
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let address = listener.local_addr().expect("sink address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}
