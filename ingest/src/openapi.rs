//! The OpenAPI document served at `/openapi.json`, describing every route.

pub const DOCUMENT: &str = include_str!("openapi.json");
