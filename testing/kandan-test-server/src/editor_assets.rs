//! Collaboration assets for the local editor (protocol §8.4): files a test puts at
//! `/editor-assets/<path>` with [`crate::KandanTestServer::set_editor_asset`], served to
//! bearer-authenticated runners, with a log of who fetched what.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::bearer::Bearer;
use crate::server::ServerCore;
use crate::sync::lock;

pub const ASSET_PREFIX: &str = "/editor-assets";

#[derive(Default)]
pub(crate) struct EditorAssets {
    files: Mutex<HashMap<String, Vec<u8>>>,
    served: Mutex<Vec<String>>,
}

impl EditorAssets {
    pub(crate) fn set(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.files).insert(path.trim_start_matches('/').to_owned(), bytes);
    }

    pub(crate) fn served(&self) -> Vec<String> {
        lock(&self.served).clone()
    }
}

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new().route(&format!("{ASSET_PREFIX}/{{*path}}"), get(asset))
}

async fn asset(
    State(core): State<Arc<ServerCore>>,
    _bearer: Bearer,
    Path(path): Path<String>,
) -> Response {
    let Some(bytes) = lock(&core.editor_assets.files).get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "no such editor asset").into_response();
    };
    lock(&core.editor_assets.served).push(path);
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}
