//! Every failure as a Python exception of a documented class: timeouts
//! are `TimeoutError`, a hub gone or unreachable `ConnectionError`, the
//! package's own (`IpcError` and below) for the rest.

use ipc_core::ConnectError;
use ipc_hub::{CallError, JoinError, SendToError};
use pyo3::exceptions::{
    PyConnectionError, PyConnectionRefusedError, PyException, PyOSError, PyPermissionError,
    PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    ipc_agent,
    IpcError,
    PyException,
    "Base of the errors ipc_agent defines."
);
pyo3::create_exception!(
    ipc_agent,
    CallFailed,
    IpcError,
    "The other side answered the call with a failure; the message is its reason."
);
pyo3::create_exception!(
    ipc_agent,
    EncodeError,
    PyValueError,
    "A value the agent's codec cannot encode (a type it has no form for, an int beyond 64 bits, bytes in JSON)."
);
pyo3::create_exception!(
    ipc_agent,
    DecodeError,
    PyValueError,
    "Bytes that are not a value in the agent's codec."
);
pyo3::create_exception!(
    ipc_agent,
    TooLarge,
    PyValueError,
    "A frame larger than the connection carries."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("IpcError", py.get_type::<IpcError>())?;
    m.add("CallFailed", py.get_type::<CallFailed>())?;
    m.add("EncodeError", py.get_type::<EncodeError>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("TooLarge", py.get_type::<TooLarge>())?;
    Ok(())
}

pub(crate) fn call_error(e: CallError) -> PyErr {
    let text = e.to_string();
    match e {
        CallError::Timeout => PyTimeoutError::new_err(text),
        CallError::PeerGone(_) | CallError::UnknownPeer(_) => PyConnectionError::new_err(text),
        CallError::Failed(reason) => CallFailed::new_err(reason),
        CallError::Encode(_) => EncodeError::new_err(text),
        CallError::Decode(_) => DecodeError::new_err(text),
        CallError::TooLarge { .. } => TooLarge::new_err(text),
        _ => IpcError::new_err(text),
    }
}

pub(crate) fn send_error(e: SendToError) -> PyErr {
    let text = e.to_string();
    match e {
        // The queue stayed full for the whole send timeout.
        SendToError::Full => PyTimeoutError::new_err(text),
        SendToError::PeerGone(_) | SendToError::UnknownPeer(_) => PyConnectionError::new_err(text),
        SendToError::Encode(_) => EncodeError::new_err(text),
        SendToError::TooLarge { .. } => TooLarge::new_err(text),
        SendToError::Memory(_) => PyOSError::new_err(text),
        _ => IpcError::new_err(text),
    }
}

/// Why joining failed, by stage.
pub(crate) mod join_error {
    use super::*;

    pub(crate) fn connect(e: ConnectError) -> PyErr {
        let text = format!("connecting to the hub: {e}");
        match e {
            ConnectError::Timeout => PyTimeoutError::new_err(text),
            // No hub there: to the agent, a hub that is not running.
            ConnectError::NotFound(_) => PyConnectionRefusedError::new_err(text),
            ConnectError::PermissionDenied(_) => PyPermissionError::new_err(text),
            ConnectError::InvalidAddress(_)
            | ConnectError::WrongTransport { .. }
            | ConnectError::InvalidConfig(_)
            | ConnectError::PathTooLong { .. } => PyValueError::new_err(text),
            _ => PyConnectionError::new_err(text),
        }
    }

    pub(crate) fn join(e: JoinError) -> PyErr {
        let text = format!("joining the hub: {e}");
        match e {
            JoinError::Timeout => PyTimeoutError::new_err(text),
            JoinError::InvalidName(_) | JoinError::InvalidConfig(_) => PyValueError::new_err(text),
            JoinError::Refused(_) => PyConnectionRefusedError::new_err(text),
            _ => PyConnectionError::new_err(text),
        }
    }
}
