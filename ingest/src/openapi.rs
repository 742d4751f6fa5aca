//! The OpenAPI document served at `/openapi.json`, describing every route.

pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (path, method) of every `.route(...)` in the router source (not
    /// in its tests).
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("http.rs");
        let src = src.split("#[cfg(test)]").next().unwrap_or(src);
        let mut out = BTreeSet::new();
        for (i, _) in src.match_indices(".route(") {
            // rustfmt may put the path on the next line.
            let rest = src[i + 7..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else { continue };
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end].to_string();
            let after = &rest[end..];
            // The handlers: up to the next route (or the end of the chain).
            let call = &after[..after.find(".route(").or_else(|| after.find(".fallback(")).unwrap_or(after.len())];
            for m in ["get", "post", "put", "delete"] {
                if call.contains(&format!("{m}(")) {
                    out.insert((path.replace("{ack_id}", "{ackId}"), m.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_describes_every_route_and_only_those() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for m in ops.as_object().expect("operations").keys() {
                documented.insert((path.clone(), m.clone()));
            }
        }
        let routes = routed();
        assert!(routes.len() >= 12, "the route scan found only {routes:?}");
        assert_eq!(routes, documented);
    }

    /// Default deny holds only if the access table names every route: a
    /// route missing from it would be refused to everyone, one in it but
    /// not routed is a stale rule.
    #[test]
    fn the_access_table_covers_every_route_and_only_those() {
        let ruled: BTreeSet<(String, String)> = crate::authz::RULES
            .iter()
            .map(|r| (r.route.replace("{ack_id}", "{ackId}"), r.method.to_ascii_lowercase()))
            .collect();
        assert_eq!(routed(), ruled);
    }
}
