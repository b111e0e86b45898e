//! A graphql-transport-ws client for subscription tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::TestApp;

/// A WebSocket to the service.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` and sends `connection_init` with `token`; returns the socket and the
/// server's first answer (`connection_ack`, or an error/close when the token is refused).
pub async fn open(app: &TestApp, token: &str) -> (Socket, Option<Value>) {
    open_at(&app.base_url, token).await
}

/// Like [`open`], on the service at `base_url` (`http://host:port`).
pub async fn open_at(base_url: &str, token: &str) -> (Socket, Option<Value>) {
    let url = format!("{}/graphql/ws", base_url.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connect");
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send connection_init");
    let first = next_json(&mut socket).await;
    (socket, first)
}

/// Opens an acknowledged connection as `token`.
pub async fn connect(app: &TestApp, token: &str) -> Socket {
    connect_at(&app.base_url, token).await
}

/// Like [`connect`], on the service at `base_url`.
pub async fn connect_at(base_url: &str, token: &str) -> Socket {
    let (socket, ack) = open_at(base_url, token).await;
    let ack = ack.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

/// The next JSON message (pings skipped), or `None` on close, error or 30 s of silence.
pub async fn next_json(socket: &mut Socket) -> Option<Value> {
    next_json_within(socket, Duration::from_secs(30)).await
}

/// Like [`next_json`] with a chosen silence limit.
pub async fn next_json_within(socket: &mut Socket, limit: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(limit, socket.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).ok()?;
            if value["type"] == "ping" {
                continue;
            }
            return Some(value);
        }
    }
}

/// Starts subscription `id`.
pub async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    let message =
        json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send subscribe");
}

/// Stops subscription `id` (the client's `complete`).
pub async fn stop(socket: &mut Socket, id: &str) {
    let message = json!({"id": id, "type": "complete"});
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send complete");
}
