//! GraphiQL, served from the binary itself.
//!
//! The page and its scripts (GraphiQL 4.1.2, React 18.3.1, MIT-licensed, in `assets/graphiql/`)
//! are embedded at build time, so GraphiQL works without internet access and without trusting a
//! CDN: air-gapped installations and strict content-security policies get the same page.
//! Assets live under a versioned path and are cached for a year; the page itself is not cached.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The URL prefix of the embedded assets; the version makes long caching safe.
pub(crate) const ASSETS: &str = "/graphiql/4.1.2";

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Chronicle</title>
    <style>
      body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
    <script src="{assets}/react.production.min.js"></script>
    <script src="{assets}/react-dom.production.min.js"></script>
    <link rel="stylesheet" href="{assets}/graphiql.min.css" />
  </head>
  <body>
    <div id="graphiql">Loading…</div>
    <script src="{assets}/graphiql.min.js"></script>
    <script>
      const here = (path, socket) => {
        const url = new URL(path, window.location.origin);
        if (socket) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        return url.toString();
      };
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {
          fetcher: GraphiQL.createFetcher({
            url: here('/graphql', false),
            subscriptionUrl: here('/graphql/ws', true),
          }),
          defaultHeaders: '{\n  "Authorization": "Bearer <token from ./scripts/dev or chronicle token>"\n}',
          shouldPersistHeaders: true,
          defaultEditorToolsVisibility: 'headers',
        })
      );
    </script>
  </body>
</html>
"#;

/// The GraphiQL page.
pub async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(PAGE.replace("{assets}", ASSETS)),
    )
        .into_response()
}

/// One embedded asset by file name; 404 for anything else.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (
            include_bytes!("../assets/graphiql/graphiql.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "graphiql.min.css" => (
            include_bytes!("../assets/graphiql/graphiql.min.css"),
            "text/css; charset=utf-8",
        ),
        "react.production.min.js" => (
            include_bytes!("../assets/graphiql/react.production.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
