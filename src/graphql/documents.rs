//! Documents the service has seen before: a cache of validated documents,
//! trusted documents (an allow-list loaded at start) and automatic
//! persisted queries (APQ).
//!
//! **The validated-document cache.** The same few documents arrive again
//! and again. The first time, a document is parsed and goes through every
//! validation rule; once it has passed, its parsed form is kept (LRU,
//! bounded), keyed by its text and operation name (one process serves one
//! schema, so the schema version is implied). A later request with the
//! same document skips the parse and the document-level rules: it runs on
//! a twin schema in async-graphql's `Fast` validation mode, which still
//! computes complexity and depth *with this request's variables* (so
//! another `first` still obeys the limits), and the document guard still
//! checks this request's variable values against their declared types
//! ([`super::inputs`]), the only part of validation that depends on them.
//! An invalid document is never cached, so it is never let through.
//!
//! **Trusted documents** (`--trusted-documents FILE`): a JSON map from id
//! (`sha256:<hex>` or the bare hex, as Relay and GraphQL Codegen emit) to
//! document. Each id must be the SHA-256 of its text, and each document is
//! validated once at start. Clients send `documentId` (the GraphQL-over-HTTP
//! persisted-documents appendix) over POST, GET or WebSocket. With
//! `--only-trusted` every other document is refused (introspection stays
//! allowed in open development mode, for the playground).
//!
//! **APQ** (Apollo's protocol, spoken by Apollo Client and urql):
//! `extensions.persistedQuery.sha256Hash`. A hash it does not know answers
//! `PersistedQueryNotFound`; the client then sends hash and text, the text
//! must hash to it, and it is remembered (bounded by count and bytes).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use sha2::{Digest, Sha256};

/// Documents kept validated at most (least recently used go first).
pub const VALIDATED_CAPACITY: usize = 1_000;
/// APQ documents remembered at most, and their total size.
pub const APQ_CAPACITY: usize = 10_000;
pub const APQ_MAX_BYTES: usize = 16 * 1024 * 1024;

/// How documents are handled (from the configuration).
#[derive(Debug, Clone, Default)]
pub struct DocumentSettings {
    /// The trusted documents: id → text, as read from the manifest.
    pub trusted: HashMap<String, String>,
    /// Refuse every document that is not trusted.
    pub only_trusted: bool,
    /// Introspection passes `only_trusted` (open development mode).
    pub introspection_allowed: bool,
}

/// Why a request's document could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    /// An id or hash this server does not know (APQ clients then send the text).
    NotFound(String),
    /// Not a trusted document, and only trusted documents run.
    NotAllowed(String),
    /// A malformed id, a hash that does not match its text, both a query and an id.
    Invalid(String),
}

impl DocumentError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => super::error::PERSISTED_QUERY_NOT_FOUND,
            Self::NotAllowed(_) => super::error::PERSISTED_QUERY_NOT_ALLOWED,
            Self::Invalid(_) => super::error::VALIDATION,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m) | Self::NotAllowed(m) | Self::Invalid(m) => m,
        }
    }
}

/// The document store shared by every request.
pub struct Documents {
    validated: Mutex<Lru<Arc<ExecutableDocument>>>,
    /// The schema's registry, which the request-level checks of cached
    /// documents need (taken from the first request the guard sees).
    schema_env: std::sync::OnceLock<async_graphql::SchemaEnv>,
    trusted: HashMap<String, Arc<str>>,
    only_trusted: bool,
    introspection_allowed: bool,
    apq: Mutex<Lru<Arc<str>>>,
}

impl Documents {
    /// Reads the trusted documents' ids; an id that is not the SHA-256 of
    /// its text is refused (returned as the error).
    pub fn new(settings: &DocumentSettings) -> Result<Self, TrustedDocumentError> {
        let mut trusted = HashMap::with_capacity(settings.trusted.len());
        for (id, text) in &settings.trusted {
            let hash = parse_id(id).map_err(|source| TrustedDocumentError::BadId { id: id.clone(), source })?;
            if sha256_hex(text) != hash {
                return Err(TrustedDocumentError::NotItsHash { id: id.clone() });
            }
            trusted.insert(hash, Arc::from(text.as_str()));
        }
        Ok(Self {
            validated: Mutex::new(Lru::new(VALIDATED_CAPACITY, usize::MAX)),
            schema_env: std::sync::OnceLock::new(),
            trusted,
            only_trusted: settings.only_trusted,
            introspection_allowed: settings.introspection_allowed,
            apq: Mutex::new(Lru::new(APQ_CAPACITY, APQ_MAX_BYTES)),
        })
    }

    /// The trusted documents (for validating them at start).
    pub fn trusted(&self) -> impl Iterator<Item = (&String, &Arc<str>)> {
        self.trusted.iter()
    }

    /// Fills in `request.query` from a `documentId` or an APQ hash, and
    /// applies `--only-trusted`.
    pub fn resolve(
        &self,
        request: &mut async_graphql::Request,
        document_id: Option<&str>,
    ) -> Result<(), DocumentError> {
        if let Some(id) = document_id {
            if !request.query.is_empty() {
                return Err(DocumentError::Invalid("send either `query` or `documentId`, not both".into()));
            }
            let hash = parse_id(id).map_err(|e| DocumentError::Invalid(e.to_string()))?;
            request.query = self.lookup(&hash).ok_or_else(|| {
                DocumentError::NotFound(format!("documentId {id} is not one of this server's documents"))
            })?;
            return Ok(());
        }
        if let Some(hash) = apq_hash(request)? {
            if request.query.is_empty() {
                // Apollo's clients look for this exact message.
                request.query =
                    self.lookup(&hash).ok_or_else(|| DocumentError::NotFound("PersistedQueryNotFound".into()))?;
                return Ok(());
            }
            if sha256_hex(&request.query) != hash {
                return Err(DocumentError::Invalid("provided sha does not match query".into()));
            }
            self.check_allowed(&request.query, &hash)?;
            if !self.trusted.contains_key(&hash) {
                let text: Arc<str> = Arc::from(request.query.as_str());
                let size = text.len();
                lock(&self.apq).insert(hash, text, size);
            }
            return Ok(());
        }
        if self.only_trusted && !request.query.is_empty() {
            let hash = sha256_hex(&request.query);
            self.check_allowed(&request.query, &hash)?;
        }
        Ok(())
    }

    fn lookup(&self, hash: &str) -> Option<String> {
        if let Some(text) = self.trusted.get(hash) {
            return Some(text.to_string());
        }
        lock(&self.apq).get(hash).map(|t| t.to_string())
    }

    fn check_allowed(&self, query: &str, hash: &str) -> Result<(), DocumentError> {
        if !self.only_trusted || self.trusted.contains_key(hash) {
            return Ok(());
        }
        if self.introspection_allowed && is_introspection(query) {
            return Ok(());
        }
        Err(DocumentError::NotAllowed(
            "this server runs only its trusted documents: send a documentId from its manifest".into(),
        ))
    }

    /// The schema's registry, once any request has run.
    pub fn schema_env(&self) -> Option<&async_graphql::SchemaEnv> {
        self.schema_env.get()
    }

    pub fn set_schema_env(&self, env: &async_graphql::SchemaEnv) {
        // Set once: a later call hands the same registry, so losing the race drops nothing.
        let _ = self.schema_env.set(env.clone());
    }

    /// The validated parse of this document, if it has passed validation before.
    pub fn validated(&self, key: &str) -> Option<Arc<ExecutableDocument>> {
        let found = lock(&self.validated).get(key);
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!(crate::metrics::DOCUMENT_CACHE, "result" => result).increment(1);
        found
    }

    /// The validated parse of this document, without counting a cache hit or miss.
    pub fn peek(&self, key: &str) -> Option<Arc<ExecutableDocument>> {
        lock(&self.validated).get(key)
    }

    /// Remembers a document that has just passed validation.
    pub fn remember(&self, key: String, document: ExecutableDocument) {
        lock(&self.validated).insert(key, Arc::new(document), 0);
    }
}

/// The key of a document in the validated cache.
pub fn cache_key(query: &str, operation_name: Option<&str>) -> String {
    let operation = operation_name.unwrap_or("");
    let mut key = String::with_capacity(operation.len() + 1 + query.len());
    key.push_str(operation);
    key.push('\0');
    key.push_str(query);
    key
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A string that is no document id (at most its first 80 characters kept).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not a document id (sha256:<64 hex digits>)")]
pub struct NotADocumentId(String);

/// A trusted document the server cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum TrustedDocumentError {
    #[error("trusted document {id:?}: {source}")]
    BadId {
        id: String,
        #[source]
        source: NotADocumentId,
    },
    #[error("trusted document {id:?}: the id is not the SHA-256 of its text")]
    NotItsHash { id: String },
}

/// `sha256:<hex>` or bare hex → the lowercase hex digest.
fn parse_id(id: &str) -> Result<String, NotADocumentId> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(NotADocumentId(id.chars().take(80).collect()))
    }
}

/// The APQ hash of a request, if it carries one (`extensions.persistedQuery`).
fn apq_hash(request: &async_graphql::Request) -> Result<Option<String>, DocumentError> {
    let Some(persisted) = request.extensions.get("persistedQuery") else { return Ok(None) };
    let persisted = persisted.clone().into_json().unwrap_or_default();
    if persisted.get("version").and_then(serde_json::Value::as_i64).is_some_and(|v| v != 1) {
        return Err(DocumentError::Invalid("PersistedQueryNotSupported: only version 1".into()));
    }
    let hash = persisted
        .get("sha256Hash")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| DocumentError::Invalid("extensions.persistedQuery needs a sha256Hash".into()))?;
    parse_id(hash).map(Some).map_err(|e| DocumentError::Invalid(e.to_string()))
}

pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A document whose every operation asks only `__schema`, `__type` and `__typename`.
fn is_introspection(query: &str) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(query) else { return false };
    document.operations.iter().all(|(_, op)| {
        let mut fields = Vec::new();
        super::reads::root_field_names(&document, &op.node.selection_set.node, &mut fields).is_some()
            && fields.iter().all(|f| matches!(f.as_str(), "__schema" | "__type" | "__typename"))
    })
}

/// A least-recently-used map bounded by entries and by a total size, on
/// the `lru` crate (constant-time use and eviction).
struct Lru<V> {
    entries: lru::LruCache<String, (V, usize)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
}

impl<V: Clone> Lru<V> {
    fn new(capacity: usize, max_bytes: usize) -> Self {
        Self { entries: lru::LruCache::unbounded(), capacity, max_bytes, bytes: 0 }
    }

    fn get(&mut self, key: &str) -> Option<V> {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    fn insert(&mut self, key: String, value: V, size: usize) {
        if size > self.max_bytes {
            return;
        }
        if let Some((_, old)) = self.entries.put(key, (value, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.entries.len() > self.capacity || self.bytes > self.max_bytes {
            let Some((_, (_, size))) = self.entries.pop_lru() else { break };
            self.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = "{ orders { edges { cursor } } }";

    fn store(only_trusted: bool) -> Documents {
        let trusted = HashMap::from([(format!("sha256:{}", sha256_hex(ORDERS)), ORDERS.to_owned())]);
        Documents::new(&DocumentSettings { trusted, only_trusted, introspection_allowed: true }).expect("store")
    }

    #[test]
    fn a_manifest_id_must_be_the_hash_of_its_text() {
        let trusted = HashMap::from([(format!("sha256:{}", sha256_hex("{ a }")), "{ b }".to_owned())]);
        assert!(Documents::new(&DocumentSettings { trusted, ..Default::default() }).is_err());
    }

    #[test]
    fn a_document_id_resolves_to_its_text() {
        let documents = store(true);
        let mut request = async_graphql::Request::new("");
        documents.resolve(&mut request, Some(&format!("sha256:{}", sha256_hex(ORDERS)))).expect("known");
        assert_eq!(request.query, ORDERS);
        let mut unknown = async_graphql::Request::new("");
        let err = documents.resolve(&mut unknown, Some(&format!("sha256:{}", sha256_hex("{ x }")))).unwrap_err();
        assert!(matches!(err, DocumentError::NotFound(_)));
    }

    #[test]
    fn only_trusted_refuses_other_text_but_not_introspection_in_open_mode() {
        let documents = store(true);
        assert!(matches!(
            documents.resolve(&mut async_graphql::Request::new("{ customers { edges { cursor } } }"), None),
            Err(DocumentError::NotAllowed(_))
        ));
        assert!(documents.resolve(&mut async_graphql::Request::new(ORDERS), None).is_ok());
        assert!(documents.resolve(&mut async_graphql::Request::new("{ __schema { types { name } } }"), None).is_ok());
    }

    #[test]
    fn the_lru_keeps_the_recently_used_within_its_bounds() {
        let mut lru = Lru::new(2, 10);
        lru.insert("a".into(), 1, 4);
        lru.insert("b".into(), 2, 4);
        assert_eq!(lru.get("a"), Some(1));
        lru.insert("c".into(), 3, 4); // over both bounds: b (least recent) goes
        assert_eq!((lru.get("a"), lru.get("b"), lru.get("c")), (Some(1), None, Some(3)));
        lru.insert("big".into(), 4, 11); // larger than the whole budget: not kept
        assert_eq!(lru.get("big"), None);
    }
}
