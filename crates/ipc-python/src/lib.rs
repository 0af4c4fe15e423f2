#![doc = include_str!("../README.md")]
//!
//! ## The native module
//!
//! `ipc_agent._native` is this crate; the Python package
//! (`python/ipc_agent`) wraps it. Every wait releases the GIL and wakes
//! every `SIGNAL_CHECK` (50 ms) to let Python run its signal handlers (Ctrl-C
//! cancels the wait, and with it the call); every failure is a Python
//! exception of a documented class (`errors.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{Address, Config};
use ipc_hub::{Agent, AgentEvent, AgentHandle, BodyCodec, HubConfig, Request};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

mod errors;
mod value;

use errors::{call_error, join_error, send_error};

/// How often a thread waiting in Rust lets Python look at its signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Bodies at least this large are copied once into memory lent by the
/// connection (on shared memory, a file of their own, passed not copied)
/// rather than into a frame and then the ring.
const LEND_FROM: usize = 1 << 20;

/// One runtime per process for every agent: its worker drives the
/// connections; Python threads wait on it with the GIL released.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ipc-agent")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("no async runtime: {e}")))
}

/// Runs `fut` to its end with the GIL released, looking at Python's
/// signals in between: a `KeyboardInterrupt` drops (cancels) `fut`.
fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let runtime = runtime()?;
    let mut fut = std::pin::pin!(fut);
    loop {
        let step = py.detach(|| {
            // A bug in Rust is an `IpcError` for Python, not a
            // `PanicException` (a BaseException most handlers let through).
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await })
            }))
        });
        match step {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(_)) => py.check_signals()?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(errors::IpcError::new_err(format!(
                    "internal error in ipc_agent (a bug, please report it): {why}"
                )));
            }
        }
    }
}

/// Seconds from Python as a duration: finite, not negative.
fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be a finite number of seconds, not negative (got {s})"
        ))
    })
}

fn codec_named(name: &str) -> PyResult<BodyCodec> {
    match BodyCodec::from_name(name) {
        Some(codec @ (BodyCodec::Json | BodyCodec::MessagePack)) => Ok(codec),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "codec must be \"msgpack\" or \"json\", not {name:?}"
        ))),
    }
}

/// `body` copied into a loan, if it is large and the connection lends
/// shared memory (then it is passed, not copied again); `None` otherwise.
fn lent(
    body: &[u8],
    loan: impl FnOnce(usize) -> std::io::Result<ipc_hub::LoanedBody>,
) -> Result<Option<ipc_hub::LoanedBody>, ipc_hub::SendToError> {
    if body.len() < LEND_FROM {
        return Ok(None);
    }
    let mut lent = loan(body.len()).map_err(ipc_hub::SendToError::Memory)?;
    if !lent.is_shared() {
        return Ok(None);
    }
    lent.copy_from_slice(body);
    Ok(Some(lent))
}

/// An agent's membership of a hub.
#[pyclass(frozen, module = "ipc_agent._native")]
struct NativeAgent {
    name: String,
    handle: AgentHandle,
    /// Taken by the thread waiting for events, and by `close`.
    agent: tokio::sync::Mutex<Option<Agent>>,
    /// Log records not shipped because the queue was full (a running
    /// total, carried in every record).
    logs_dropped: AtomicU64,
}

impl NativeAgent {
    fn codec_or_default(&self) -> BodyCodec {
        self.handle.codec().unwrap_or(BodyCodec::MessagePack)
    }
}

#[pymethods]
impl NativeAgent {
    #[staticmethod]
    #[pyo3(signature = (name, address, codec, timeout, max_message_size=None))]
    fn join(
        py: Python<'_>,
        name: &str,
        address: Option<&str>,
        codec: &str,
        timeout: f64,
        max_message_size: Option<usize>,
    ) -> PyResult<NativeAgent> {
        let codec = codec_named(codec)?;
        let timeout = seconds(timeout, "timeout")?;
        let address = match address {
            Some(text) => text.parse::<Address>(),
            None => Address::from_env(),
        }
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let config = HubConfig::default().with_handshake_timeout(timeout);
        let mut connection = Config::default();
        if let Some(max) = max_message_size {
            connection = connection.with_max_message_size(max);
        }
        connection
            .validate()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let name_owned = name.to_owned();
        let joined = wait(py, async move {
            let conn = ipc_any::connect_async(&address, &connection)
                .await
                .map_err(join_error::connect)?;
            Agent::join_speaking(conn, &name_owned, codec, config)
                .await
                .map_err(join_error::join)
        })??;
        Ok(NativeAgent {
            name: name.to_owned(),
            handle: joined.handle(),
            agent: tokio::sync::Mutex::new(Some(joined)),
            logs_dropped: AtomicU64::new(0),
        })
    }

    #[getter]
    fn id(&self) -> u64 {
        self.handle.id().get()
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn codec(&self) -> &'static str {
        self.handle.codec().map_or("postcard", BodyCodec::name)
    }

    /// Calls the hub with a value; returns its answer as a value, or
    /// with `raw_reply` as a `Body` of its bytes.
    fn call<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
        timeout: f64,
        raw_reply: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let codec = self.codec_or_default();
        let request = value::encode(&value::from_python(request, Some(codec))?, codec)?;
        let timeout = seconds(timeout, "timeout")?;
        let reply = wait(py, self.handle.call_raw(&request, timeout))?.map_err(call_error)?;
        if raw_reply {
            return Ok(Bound::new(py, Body(reply))?.into_any());
        }
        value::to_python(py, &value::decode(&reply, codec)?)
    }

    /// Calls the hub with bytes as they are; returns the reply's bytes.
    fn call_bytes(&self, py: Python<'_>, body: &Bound<'_, PyAny>, timeout: f64) -> PyResult<Body> {
        let body = value::bytes_of(body)?;
        let timeout = seconds(timeout, "timeout")?;
        let reply = wait(py, self.handle.call_raw(&body, timeout))?.map_err(call_error)?;
        Ok(Body(reply))
    }

    /// Sends the hub a one-way message, a value.
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let message = value::from_python(message, self.handle.codec())?;
        wait(py, self.handle.send(&message))?.map_err(send_error)
    }

    /// Sends the hub bytes as they are (a large body is written once into
    /// memory the connection lends: on shared memory, passed not copied).
    fn send_bytes(&self, py: Python<'_>, body: &Bound<'_, PyAny>) -> PyResult<()> {
        let body = value::bytes_of(body)?;
        let handle = &self.handle;
        wait(py, async {
            match lent(&body, |n| handle.loan(n))? {
                Some(loan) => handle.send_loan(loan).await,
                None => handle.send_bytes(&body).await,
            }
        })?
        .map_err(send_error)
    }

    /// The next event: `None` when `timeout` passed first, else a tuple
    /// `(kind, payload)`: `("call", NativeRequest)`, `("message", Body)`,
    /// `("shutdown", reason)` or `("left", reason)`; after `"left"`,
    /// `("ended", None)` for ever.
    #[pyo3(signature = (timeout=None))]
    fn next_event<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = timeout.map(|t| seconds(t, "timeout")).transpose()?;
        let next = async {
            let mut agent = self.agent.lock().await;
            match agent.as_mut() {
                Some(agent) => agent.next().await,
                None => None,
            }
        };
        let event = match timeout {
            // The timer is made inside the runtime (in the async block).
            Some(limit) => match wait(py, async { tokio::time::timeout(limit, next).await })? {
                Ok(event) => event,
                Err(_) => return Ok(None),
            },
            None => wait(py, next)?,
        };
        let codec = self.handle.codec();
        let pair = match event {
            Some(AgentEvent::Call(request)) => {
                let request = NativeRequest {
                    request: Mutex::new(Some(request)),
                    codec,
                };
                ("call", Bound::new(py, request)?.into_any())
            }
            Some(AgentEvent::Message(payload)) => (
                "message",
                Bound::new(py, Body(payload.bytes().clone()))?.into_any(),
            ),
            Some(AgentEvent::Shutdown(reason)) => {
                ("shutdown", reason.into_pyobject(py)?.into_any())
            }
            Some(AgentEvent::Left(reason)) => {
                ("left", reason.to_string().into_pyobject(py)?.into_any())
            }
            None | Some(_) => ("ended", py.None().into_bound(py)),
        };
        Ok(Some(PyTuple::new(
            py,
            [pair.0.into_pyobject(py)?.into_any(), pair.1],
        )?))
    }

    /// Ships a log record without waiting; false if the queue to the hub
    /// was full (the record is counted as dropped) or the agent has left.
    fn try_log(
        &self,
        level: &str,
        target: &str,
        message: &str,
        fields: Vec<(String, Bound<'_, PyAny>)>,
    ) -> bool {
        let record = ipc_tracing::EventRecord {
            emitted_ns: ipc_tracing::monotonic_ns(),
            level: level.to_owned(),
            target: target.to_owned(),
            message: message.to_owned(),
            fields: fields
                .into_iter()
                .map(|(name, v)| (name, value::field(&v)))
                .collect(),
            spans: Vec::new(),
            agent: self.name.clone(),
            pid: std::process::id(),
            dropped: self.logs_dropped.load(Ordering::Relaxed),
        };
        let Ok(encoded) = postcard::to_stdvec(&record) else {
            return false;
        };
        let shipped = self.handle.try_log(&encoded).is_ok();
        if !shipped {
            self.logs_dropped.fetch_add(1, Ordering::Relaxed);
        }
        shipped
    }

    #[getter]
    fn logs_dropped(&self) -> u64 {
        self.logs_dropped.load(Ordering::Relaxed)
    }

    /// Says goodbye, waits up to `grace` for what is queued to go out and
    /// the hub to close its side, then closes. Safe to call twice, and
    /// while another thread waits for events (it then sees `"left"`).
    fn close(&self, py: Python<'_>, reason: &str, grace: f64) -> PyResult<()> {
        let grace = seconds(grace, "grace")?;
        wait(py, async {
            match self.agent.try_lock() {
                Ok(mut agent) => {
                    if let Some(agent) = agent.take() {
                        agent.close(reason, grace).await;
                    }
                }
                // Another thread waits for events: leave from here; its
                // wait ends with the connection.
                Err(_) => self.handle.leave(reason, grace).await,
            }
        })
    }
}

/// A call from the hub, to answer once.
#[pyclass(frozen, module = "ipc_agent._native")]
struct NativeRequest {
    request: Mutex<Option<Request<ipc_core::Postcard>>>,
    codec: Option<BodyCodec>,
}

impl NativeRequest {
    fn take(&self) -> PyResult<Request<ipc_core::Postcard>> {
        self.request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err("this call was already answered")
            })
    }

    fn with<T>(&self, f: impl FnOnce(&Request<ipc_core::Postcard>) -> T) -> PyResult<T> {
        let held = self
            .request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let request = held.as_ref().ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("this call was already answered")
        })?;
        Ok(f(request))
    }
}

#[pymethods]
impl NativeRequest {
    /// Who called (the hub's own id for itself is 0).
    #[getter]
    fn peer(&self) -> PyResult<u64> {
        self.with(|r| r.peer().get())
    }

    /// The request decoded as a value.
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let decoded = self.with(|r| r.decode::<rmpv::Value>())?;
        let decoded = decoded.map_err(|e| errors::DecodeError::new_err(e.to_string()))?;
        value::to_python(py, &decoded)
    }

    /// The request's bytes as they came.
    fn body(&self) -> PyResult<Body> {
        self.with(|r| Body(r.bytes().clone()))
    }

    fn reply(&self, py: Python<'_>, answer: &Bound<'_, PyAny>) -> PyResult<()> {
        // Not encodable: the request stays unanswered, for `fail`.
        let answer = value::from_python(answer, self.codec)?;
        let request = self.take()?;
        wait(py, request.reply(&answer))?.map_err(send_error)
    }

    fn reply_bytes(&self, py: Python<'_>, body: &Bound<'_, PyAny>) -> PyResult<()> {
        let body = value::bytes_of(body)?;
        let request = self.take()?;
        wait(py, async move {
            match lent(&body, |n| request.loan(n))? {
                Some(loan) => request.reply_loan(loan).await,
                None => request.reply_bytes(&body).await,
            }
        })?
        .map_err(send_error)
    }

    fn fail(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        let request = self.take()?;
        wait(py, request.fail(reason))?.map_err(send_error)
    }

    #[getter]
    fn answered(&self) -> bool {
        self.request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
    }
}

/// Received bytes, held where they arrived: on shared memory a large body
/// is the mapping the sender wrote. Python views it without a copy
/// (`ipc_agent` makes a read-only `memoryview` over `address`, keeping
/// this object alive).
#[pyclass(frozen, module = "ipc_agent._native")]
struct Body(Bytes);

#[pymethods]
impl Body {
    fn __len__(&self) -> usize {
        self.0.len()
    }

    /// Where the bytes are in this process's memory.
    #[getter]
    fn address(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Whether they are in shared memory, not copied.
    #[getter]
    fn shared(&self) -> bool {
        ipc_shm::is_shared(&self.0)
    }

    /// A copy as `bytes`.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0)
    }

    /// The bytes decoded with `codec` (`"msgpack"` or `"json"`).
    fn decode<'py>(&self, py: Python<'py>, codec: &str) -> PyResult<Bound<'py, PyAny>> {
        let decoded = value::decode(&self.0, codec_named(codec)?)?;
        value::to_python(py, &decoded)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeAgent>()?;
    m.add_class::<NativeRequest>()?;
    m.add_class::<Body>()?;
    errors::register(m)?;
    m.add("LEND_FROM", LEND_FROM)?;
    m.add("ADDRESS_ENV", ipc_core::ADDRESS_ENV)?;
    Ok(())
}
