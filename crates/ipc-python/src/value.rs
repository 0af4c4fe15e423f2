//! Python values <-> the agent's codec, through `rmpv::Value` (which
//! holds everything MessagePack and JSON can say, bytes included).

use std::borrow::Cow;

use ipc_hub::BodyCodec;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use crate::errors::{DecodeError, EncodeError};

/// A Python value as the codec will encode it: None, bool, int (64-bit),
/// float, str, bytes, list/tuple, dict, set and dataclasses (as dicts).
pub(crate) fn from_python(
    obj: &Bound<'_, PyAny>,
    codec: Option<BodyCodec>,
) -> PyResult<rmpv::Value> {
    let value: rmpv::Value = pythonize::depythonize(obj).map_err(|e| {
        let kind = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        EncodeError::new_err(format!("cannot encode a value of type {kind}: {e}"))
    })?;
    if codec == Some(BodyCodec::Json) && has_bytes(&value) {
        return Err(EncodeError::new_err(
            "bytes have no JSON form: join with codec=\"msgpack\", or send them raw with send_bytes",
        ));
    }
    Ok(value)
}

fn has_bytes(value: &rmpv::Value) -> bool {
    match value {
        rmpv::Value::Binary(_) | rmpv::Value::Ext(..) => true,
        rmpv::Value::Array(items) => items.iter().any(has_bytes),
        rmpv::Value::Map(pairs) => pairs.iter().any(|(k, v)| has_bytes(k) || has_bytes(v)),
        _ => false,
    }
}

/// A decoded value as a Python object (maps are dicts; a key Python
/// cannot hash is an error).
pub(crate) fn to_python<'py>(py: Python<'py>, value: &rmpv::Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value)
        .map_err(|e| DecodeError::new_err(format!("the value has no Python form: {e}")))
}

pub(crate) fn encode(value: &rmpv::Value, codec: BodyCodec) -> PyResult<Vec<u8>> {
    let mut out = Vec::new();
    let encoded = match codec {
        BodyCodec::Json => ipc_core::Codec::encode(&ipc_core::Json, value, &mut out),
        _ => ipc_core::Codec::encode(&ipc_core::MessagePack, value, &mut out),
    };
    encoded.map_err(|e| EncodeError::new_err(e.to_string()))?;
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8], codec: BodyCodec) -> PyResult<rmpv::Value> {
    let decoded = match codec {
        BodyCodec::Json => ipc_core::Codec::decode(&ipc_core::Json, bytes),
        _ => ipc_core::Codec::decode(&ipc_core::MessagePack, bytes),
    };
    decoded.map_err(|e| DecodeError::new_err(e.to_string()))
}

/// The bytes of a `bytes` (borrowed: immutable, they may be read with
/// the GIL released while `obj` is held) or a `bytearray` (copied: Python
/// may resize it meanwhile).
pub(crate) fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "expected bytes or bytearray, not {}",
        obj.get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string())
    )))
}

/// A log record's field: numbers and booleans as themselves, anything
/// else as its `str`.
pub(crate) fn field(obj: &Bound<'_, PyAny>) -> ipc_tracing::FieldValue {
    use ipc_tracing::FieldValue;
    if let Ok(b) = obj.cast::<pyo3::types::PyBool>() {
        return FieldValue::Bool(b.is_true());
    }
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return FieldValue::I64(i);
        }
        if let Ok(u) = obj.extract::<u64>() {
            return FieldValue::U64(u);
        }
    }
    if obj.is_instance_of::<pyo3::types::PyFloat>()
        && let Ok(f) = obj.extract::<f64>()
    {
        return FieldValue::F64(f);
    }
    FieldValue::Str(
        obj.str()
            .map_or_else(|_| "<unprintable>".to_owned(), |s| s.to_string()),
    )
}
