//! docs/PROTOCOL.md is enough to write an agent: a Python agent that uses
//! only the standard library (`tests/python/agent.py`, written from the
//! document) joins a uds hub, logs, answers calls (and fails one), echoes
//! a message, and leaves when the hub shuts down, its last log included;
//! once with postcard bodies (the hub's own codec), once with JSON named in
//! its hello, where a newer Rust type with an extra optional field passes
//! the Python agent both ways. Skipped, saying why, where no `python3` is
//! installed.

use std::path::Path;
use std::time::Duration;

use ipc_core::Config;
use ipc_hub::{CallError, Hub, HubConfig, HubEvent, LeaveReason};

const LONG: Duration = Duration::from_secs(20);

fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    found.then_some("python3")
}

#[derive(serde::Serialize)]
struct Ask {
    text: String,
    /// A field the Python agent does not know.
    lang: Option<String>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Answer {
    upper: String,
    codec: String,
    /// A field the Python agent does not send.
    #[serde(default)]
    score: Option<u32>,
}

#[test]
fn a_python_agent_written_from_the_protocol_document() {
    python_agent(None);
}

#[test]
fn a_python_agent_speaking_json() {
    python_agent(Some(ipc_hub::BodyCodec::Json));
}

fn python_agent(codec: Option<ipc_hub::BodyCodec>) {
    let Some(python) = python() else {
        println!("skipped: no python3 on this machine");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("hub.sock");
        let mut hub = Hub::new(HubConfig::default()).expect("hub");
        hub.listen(
            ipc_uds::AsyncUdsListener::bind_path(&socket, &Config::default()).expect("bind"),
        )
        .expect("listen");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/agent.py");
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .env("IPC_ADDRESS", format!("uds:{}", socket.display()))
            .env(
                "PY_AGENT_CODEC",
                codec.map_or("postcard", ipc_hub::BodyCodec::name),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("start the python agent");
        let peer = hub
            .wait_for_peers(1, LONG)
            .await
            .expect("the python agent joins")
            .remove(0);
        assert_eq!(peer.name, "py-agent");
        assert_eq!(peer.codec, codec);
        assert_eq!(peer.credentials.pid, child.id());

        // Its first log record.
        let record = loop {
            match tokio::time::timeout(LONG, hub.next())
                .await
                .expect("an event")
            {
                HubEvent::Log { peer: from, record } if from == peer.id => break record,
                _ => continue,
            }
        };
        let record = ipc_tracing::decode(&record).expect("a record in the documented encoding");
        assert_eq!(record.message, "hello from python");
        assert_eq!(record.level, "INFO");
        assert_eq!(record.agent, "py-agent");
        assert_eq!(Some(record.pid), child.id());
        assert_eq!(
            record.fields,
            vec![("step".to_owned(), ipc_tracing::FieldValue::U64(1))]
        );

        // Typed calls, answered in order; one failed with its reason.
        for word in ["search", "ünïcode"] {
            let answer: String = hub.call(peer.id, &word, LONG).await.expect("an answer");
            assert_eq!(answer, word.to_uppercase());
        }
        let failed = hub.call::<_, String>(peer.id, &"fail", LONG).await;
        assert!(
            matches!(&failed, Err(CallError::Failed(why)) if why == "asked to fail"),
            "{failed:?}"
        );
        if codec.is_some() {
            // A struct as a JSON object: a field the agent does not know
            // goes one way, one it does not send is defaulted the other.
            let ask = Ask {
                text: "tool".into(),
                lang: Some("en".into()),
            };
            let answer: Answer = hub.call(peer.id, &ask, LONG).await.expect("an answer");
            let want = Answer {
                upper: "TOOL".into(),
                codec: "json".into(),
                score: None,
            };
            assert_eq!(answer, want);
        }

        // A message comes back as it went.
        hub.send_to(peer.id, &42u64).await.expect("send");
        let echoed = loop {
            match tokio::time::timeout(LONG, hub.next())
                .await
                .expect("an event")
            {
                HubEvent::Message {
                    peer: from,
                    payload,
                } if from == peer.id => break payload,
                _ => continue,
            }
        };
        assert_eq!(echoed.decode::<u64>().expect("u64"), 42);

        // Shutdown: its last words, then its goodbye.
        let closed = hub.shutdown(LONG).await;
        assert_eq!(closed.closed, 1);
        let mut last_words = false;
        let mut left = None;
        for event in closed.events {
            match event {
                HubEvent::Log { record, .. } => {
                    last_words |=
                        ipc_tracing::decode(&record).expect("record").message == "last words";
                }
                HubEvent::Left { reason, .. } => left = Some(reason),
                _ => {}
            }
        }
        assert!(last_words, "the last log record did not arrive");
        assert_eq!(left, Some(LeaveReason::Closed("done".into())));
        let status = tokio::time::timeout(LONG, child.wait())
            .await
            .expect("the agent exits")
            .expect("wait");
        assert!(status.success(), "the python agent exited with {status}");
    });
}
