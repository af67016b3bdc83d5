//! An in-process fake Kubernetes API server for tests (feature `fake`).
//!
//! Plain HTTP/1.1 on `127.0.0.1:0` with keep-alive, one thread per connection. Objects are
//! kept by (group, version, plural, namespace, name); it assigns uid, resourceVersion,
//! creationTimestamp and generation, and answers the subset of the API kubeha uses: get, list
//! (labelSelector; fieldSelector `spec.nodeName`, `metadata.name`, `metadata.namespace`),
//! create, replace (409 on a stale resourceVersion), merge patch (strategic merge patch is
//! treated as a merge patch: lists are replaced), delete, the `status` and `approval`
//! subresources, pod eviction and `/livez`. Every request is recorded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// One request the fake server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, without `?` (empty when none).
    pub query: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl RecordedRequest {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `METHOD path`, for asserting sequences.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

type Key = (String, String, String, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    next_rv: u64,
    requests: Vec<RecordedRequest>,
    conflicts: u32,
    eviction_refusals: u32,
    pdb_name: String,
    livez_ok: bool,
}

/// The fake API server; stops when dropped.
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").field("addr", &self.addr).finish()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The plural a kind is served under (the usual English rules, as the API does).
pub fn plural_of(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k == "endpoints" {
        k
    } else if k.ends_with('s') || k.ends_with("ch") || k.ends_with('x') {
        format!("{k}es")
    } else if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{k}s")
    }
}

impl FakeApi {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for the fake API");
        let addr = listener
            .local_addr()
            .expect("local address of the fake API");
        let state = Arc::new(Mutex::new(State {
            next_rv: 1000,
            livez_ok: true,
            pdb_name: "budget".into(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    let stop = stop.clone();
                    std::thread::spawn(move || serve(conn, &state, &stop));
                }
            })
        };
        FakeApi {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server, without credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Stores an object as if created through the API (uid, resourceVersion… assigned); its
    /// plural is derived from its kind. Returns the stored object.
    pub fn insert(&self, obj: Value) -> Value {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        self.insert_as(&plural_of(&kind), obj)
    }

    /// As [`FakeApi::insert`] with an explicit plural.
    pub fn insert_as(&self, plural: &str, mut obj: Value) -> Value {
        let (group, version) = split_api_version(obj["apiVersion"].as_str().unwrap_or("v1"));
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut st = lock(&self.state);
        stamp_new(&mut st, &mut obj);
        st.objects
            .insert((group, version, plural.into(), ns, name), obj.clone());
        obj
    }

    /// The stored object, if any (`api_version` as in the object: `v1`, `apps/v1`…).
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (group, version) = split_api_version(api_version);
        let key = (
            group,
            version,
            plural.to_string(),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        lock(&self.state).objects.get(&key).cloned()
    }

    /// Changes a stored object in place (status updates a controller would make), bumping its
    /// resourceVersion.
    pub fn update(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) {
        let (group, version) = split_api_version(api_version);
        let key = (
            group,
            version,
            plural.to_string(),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        let mut st = lock(&self.state);
        st.next_rv += 1;
        let rv = st.next_rv.to_string();
        if let Some(obj) = st.objects.get_mut(&key) {
            edit(obj);
            obj["metadata"]["resourceVersion"] = json!(rv);
        }
    }

    /// Edits every stored object of `api_version`/`plural` in place (a test's stand-in for
    /// the controllers that set statuses: CRDs Established, Deployments available…).
    pub fn update_all(&self, api_version: &str, plural: &str, edit: impl Fn(&mut Value)) {
        let (group, version) = split_api_version(api_version);
        let mut st = lock(&self.state);
        let mut rv = st.next_rv;
        for (key, obj) in st.objects.iter_mut() {
            if key.0 == group && key.1 == version && key.2 == plural {
                let before = obj.clone();
                edit(obj);
                if *obj != before {
                    rv += 1;
                    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                }
            }
        }
        st.next_rv = rv;
    }

    /// The next `n` replace/patch requests answer 409 Conflict.
    pub fn inject_conflicts(&self, n: u32) {
        lock(&self.state).conflicts = n;
    }

    /// The next `n` evictions answer 429 as if PodDisruptionBudget `pdb` forbade them.
    pub fn refuse_evictions(&self, n: u32, pdb: &str) {
        let mut st = lock(&self.state);
        st.eviction_refusals = n;
        st.pdb_name = pdb.to_string();
    }

    /// Whether `/livez` answers 200 (default) or 500.
    pub fn set_livez(&self, ok: bool) {
        lock(&self.state).livez_ok = ok;
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn split_api_version(av: &str) -> (String, String) {
    match av.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), av.to_string()),
    }
}

fn stamp_new(st: &mut State, obj: &mut Value) {
    st.next_rv += 1;
    let rv = st.next_rv;
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    meta["resourceVersion"] = json!(rv.to_string());
    if meta["uid"].is_null() {
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
    }
    if meta["creationTimestamp"].is_null() {
        meta["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    }
    if meta["generation"].is_null() {
        meta["generation"] = json!(1);
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Reads one request; `None` at end of stream, on a stop, or on garbage.
fn read_request(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Request> {
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut content_type = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => content_type = Some(value.to_string()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(content_length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        content_type,
        body,
    })
}

fn serve(conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = conn.set_nodelay(true);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader, stop) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (code, body, ctype) = {
            let mut st = lock(state);
            st.requests.push(RecordedRequest {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                content_type: req.content_type.clone(),
                body: String::from_utf8_lossy(&req.body).into_owned(),
            });
            handle(&mut st, &req)
        };
        let reason = match code {
            200 => "OK",
            201 => "Created",
            404 => "Not Found",
            409 => "Conflict",
            429 => "Too Many Requests",
            _ => "Status",
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        if writer.write_all(&bytes).is_err() {
            return;
        }
        let _ = writer.flush();
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, String, &'static str) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (code, body.to_string(), "application/json")
}

fn ok(code: u16, v: &Value) -> (u16, String, &'static str) {
    (code, v.to_string(), "application/json")
}

struct Target {
    group: String,
    version: String,
    plural: String,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let plural = rest.first()?.to_string();
    Some(Target {
        group,
        version,
        plural,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches_labels(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let labels = &obj["metadata"]["labels"];
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            let k = k.trim().trim_end_matches('=');
            labels[k].as_str() == Some(v.trim().trim_start_matches('='))
        } else if let Some(k) = term.strip_prefix('!') {
            labels[k.trim()].is_null()
        } else {
            !labels[term.trim()].is_null()
        }
    })
}

fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (field, want, equal) = match term.split_once("!=") {
            Some((f, w)) => (f, w, false),
            None => match term.split_once('=') {
                Some((f, w)) => (f, w.trim_start_matches('='), true),
                None => return false,
            },
        };
        let pointer = format!("/{}", field.trim().replace('.', "/"));
        let have = obj
            .pointer(&pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        (have == want.trim()) == equal
    })
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn handle(st: &mut State, req: &Request) -> (u16, String, &'static str) {
    if req.path == "/livez" {
        return if st.livez_ok {
            (200, "ok".into(), "text/plain")
        } else {
            (500, "[-]etcd failed".into(), "text/plain")
        };
    }
    let Some(t) = parse_target(&req.path) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find {}", req.path),
        );
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let key_of = |name: &str| {
        (
            t.group.clone(),
            t.version.clone(),
            t.plural.clone(),
            t.ns.clone(),
            name.to_string(),
        )
    };
    let not_found = |name: &str| {
        let group = if t.group.is_empty() {
            String::new()
        } else {
            format!(".{}", t.group)
        };
        status(
            404,
            "NotFound",
            &format!("{}{group} \"{name}\" not found", t.plural),
        )
    };
    match (req.method.as_str(), &t.name, t.sub.as_deref()) {
        ("GET", None, _) => {
            let labels = query_param(&req.query, "labelSelector").unwrap_or_default();
            let fields = query_param(&req.query, "fieldSelector").unwrap_or_default();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((g, v, p, ns, _), _)| {
                    *g == t.group
                        && *v == t.version
                        && *p == t.plural
                        && (t.ns.is_empty() || *ns == t.ns)
                })
                .map(|(_, o)| o)
                .filter(|o| matches_labels(o, &labels) && matches_fields(o, &fields))
                .cloned()
                .collect();
            let kind = items
                .first()
                .and_then(|o| o["kind"].as_str())
                .map(|k| format!("{k}List"))
                .unwrap_or_else(|| "List".into());
            let api_version = if t.group.is_empty() {
                t.version.clone()
            } else {
                format!("{}/{}", t.group, t.version)
            };
            ok(
                200,
                &json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"resourceVersion": st.next_rv.to_string()}, "items": items}),
            )
        }
        ("GET", Some(name), _) => match st.objects.get(&key_of(name)) {
            Some(o) => ok(200, o),
            None => not_found(name),
        },
        ("POST", None, _) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if name.is_empty() {
                return status(422, "Invalid", "metadata.name: Required value");
            }
            let key = key_of(&name);
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", t.plural),
                );
            }
            let mut obj = body.clone();
            if !t.ns.is_empty() {
                obj["metadata"]["namespace"] = json!(t.ns);
            }
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            stamp_new(st, &mut obj);
            st.objects.insert(key, obj.clone());
            ok(201, &obj)
        }
        ("POST", Some(name), Some("eviction")) if t.plural == "pods" => {
            if st.eviction_refusals > 0 {
                st.eviction_refusals -= 1;
                let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "code": 429, "reason": "TooManyRequests",
                    "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                    "details": {"causes": [{"reason": "DisruptionBudget", "message":
                        format!("The disruption budget {} needs 1 healthy pods and has 1 currently", st.pdb_name)}]}});
                return (429, body.to_string(), "application/json");
            }
            if st.objects.remove(&key_of(name)).is_none() {
                return not_found(name);
            }
            ok(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 201}),
            )
        }
        ("PUT", Some(name), sub) => {
            let key = key_of(name);
            let Some(live) = st.objects.get(&key).cloned() else {
                return not_found(name);
            };
            if st.conflicts > 0 {
                st.conflicts -= 1;
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": injected conflict",
                        t.plural
                    ),
                );
            }
            if body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                );
            }
            let mut obj = match sub {
                None => {
                    let mut o = body.clone();
                    o["status"] = live["status"].clone();
                    if o["status"].is_null()
                        && let Some(m) = o.as_object_mut()
                    {
                        m.remove("status");
                    }
                    if o["spec"] != live["spec"] {
                        o["metadata"]["generation"] =
                            json!(live["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
                    } else {
                        o["metadata"]["generation"] = live["metadata"]["generation"].clone();
                    }
                    o
                }
                Some("status") => {
                    let mut o = live.clone();
                    o["status"] = body["status"].clone();
                    o
                }
                Some("approval") => {
                    let mut o = live.clone();
                    o["status"]["conditions"] = body["status"]["conditions"].clone();
                    o
                }
                Some(other) => return status(404, "NotFound", &format!("no subresource {other}")),
            };
            for k in ["uid", "creationTimestamp", "namespace"] {
                if !live["metadata"][k].is_null() {
                    obj["metadata"][k] = live["metadata"][k].clone();
                }
            }
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            st.objects.insert(key, obj.clone());
            ok(200, &obj)
        }
        ("PATCH", Some(name), None) => {
            let key = key_of(name);
            let Some(live) = st.objects.get(&key).cloned() else {
                return not_found(name);
            };
            let ctype = req.content_type.clone().unwrap_or_default();
            if !ctype.contains("merge-patch+json") {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!("fake API: patch type {ctype} not supported"),
                );
            }
            if st.conflicts > 0 {
                st.conflicts -= 1;
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": injected conflict",
                        t.plural
                    ),
                );
            }
            let want_rv = &body["metadata"]["resourceVersion"];
            if !want_rv.is_null() && *want_rv != live["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                        t.plural
                    ),
                );
            }
            let mut obj = live.clone();
            merge_patch(&mut obj, &body);
            if obj["spec"] != live["spec"] {
                obj["metadata"]["generation"] =
                    json!(live["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
            }
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            st.objects.insert(key, obj.clone());
            ok(200, &obj)
        }
        ("DELETE", Some(name), None) => match st.objects.remove(&key_of(name)) {
            Some(o) => ok(200, &o),
            None => not_found(name),
        },
        _ => status(
            405,
            "MethodNotAllowed",
            &format!("fake API: {} {} not supported", req.method, req.path),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_selectors() {
        let t = parse_target("/api/v1/namespaces/kube-system/pods/p1/eviction").expect("path");
        assert_eq!(
            (
                t.ns.as_str(),
                t.plural.as_str(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("kube-system", "pods", Some("p1"), Some("eviction"))
        );
        let t = parse_target("/api/v1/namespaces/kube-system").expect("path");
        assert_eq!(
            (t.ns.as_str(), t.plural.as_str(), t.name.as_deref()),
            ("", "namespaces", Some("kube-system"))
        );
        let t = parse_target("/apis/apps/v1/daemonsets").expect("path");
        assert_eq!(
            (t.group.as_str(), t.plural.as_str(), t.name),
            ("apps", "daemonsets", None)
        );
        assert_eq!(percent_decode("spec.nodeName%3Dcp-1"), "spec.nodeName=cp-1");
        let pod =
            json!({"metadata": {"labels": {"component": "kcm"}}, "spec": {"nodeName": "cp-1"}});
        assert!(matches_fields(&pod, "spec.nodeName=cp-1"));
        assert!(!matches_fields(&pod, "spec.nodeName=cp-2"));
        assert!(matches_labels(&pod, "component=kcm"));
        assert!(!matches_labels(&pod, "component!=kcm"));
        assert_eq!(plural_of("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural_of("Ingress"), "ingresses");
    }
}
