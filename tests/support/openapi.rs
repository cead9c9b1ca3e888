//! An OpenAPI 3.1 file checked against the running program: each answer's status, content
//! type and JSON body against the file, and every operation in the file reached.

use super::HttpResponse;
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub struct Spec {
    pub doc: Value,
    /// (method, path template) reached.
    pub reached: BTreeSet<(String, String)>,
}

impl Spec {
    /// The file at `path` (from the crate's root).
    pub fn load(path: &str) -> Spec {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
        assert_eq!(doc["openapi"], "3.1.0");
        Spec {
            doc,
            reached: BTreeSet::new(),
        }
    }

    /// Validates `value` against `schema` (which may `$ref` the components).
    pub fn validate(&self, schema: &Value, value: &Value, what: &str) {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.doc["components"],
        });
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{value:#}");
    }

    pub fn component(&self, name: &str, value: &Value, what: &str) {
        self.validate(
            &json!({ "$ref": format!("#/components/schemas/{name}") }),
            value,
            what,
        );
    }

    /// Checks one answer: its status is documented for the operation, its content type is
    /// the documented one, and a JSON body matches the schema.
    pub fn check(&mut self, method: &str, template: &str, r: &HttpResponse) {
        let what = format!("{method} {template} → {}", r.status);
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{template} {method} is not in the file");
        self.reached
            .insert((method.to_string(), template.to_string()));
        let mut response = op["responses"][r.status.to_string()].clone();
        if let Some(reference) = response["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            response = self.doc["components"]["responses"][name].clone();
        }
        assert!(
            response.is_object(),
            "{what}: status not documented ({})",
            r.body
        );
        // A response documented without content (204) must have none.
        if response.get("content").is_none() {
            assert!(r.body.is_empty(), "{what}: a body where none is documented");
            return;
        }
        let content_type = r
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let media = &response["content"][&content_type];
        assert!(
            media.is_object(),
            "{what}: content type {content_type:?} not documented"
        );
        if content_type == "application/json" {
            let body: Value =
                serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
            self.validate(&media["schema"], &body, &what);
        }
    }

    pub fn every_operation_reached(&self) {
        self.every_operation_reached_but(&[]);
    }

    /// [`Spec::every_operation_reached`], but for operations another test reaches (a
    /// listener of its own: `POST /v1/wechatpay/notify`).
    pub fn every_operation_reached_but(&self, elsewhere: &[&str]) {
        let mut missing = Vec::new();
        for (path, ops) in self.doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                let key = (method.to_ascii_uppercase(), path.clone());
                let name = format!("{} {path}", key.0);
                if !self.reached.contains(&key) && !elsewhere.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
        }
        assert!(missing.is_empty(), "never called: {missing:?}");
    }
}
