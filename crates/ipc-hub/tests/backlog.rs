//! One peer's unread frames hold at most its backlog budget in the hub:
//! beyond it the hub stops reading that peer, and the peer's own sends
//! push back (`Full`) instead of the hub's memory growing.

use std::time::Duration;

use ipc_core::stream_async::AsyncFramedStream;
use ipc_core::{Capabilities, Config};
use ipc_hub::{Agent, Hub, HubConfig, HubEvent, SendToError};
use tokio::net::UnixStream;

fn conn(s: UnixStream) -> impl ipc_core::AsyncSplit + 'static {
    let (r, w) = s.into_split();
    AsyncFramedStream::new(r, w, Config::default(), Capabilities::new(usize::MAX))
}

#[test]
fn an_unread_flood_is_bounded_by_the_backlog() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        const SIZE: usize = 256 * 1024;
        const SENDS: usize = 64; // 16 MiB in all
        let config = HubConfig::default()
            .with_peer_backlog_bytes(1 << 20)
            .with_queue_len(4)
            .with_send_timeout(Duration::from_millis(200));
        let mut hub = Hub::new(config.clone()).unwrap();
        let (near, far) = UnixStream::pair().unwrap();
        let handle = hub.handle();
        let add = tokio::spawn(async move { handle.add(conn(near)).await.map(|p| p.id) });
        let agent = Agent::join(conn(far), "flooder", config).await.unwrap();
        let peer = add.await.unwrap().unwrap();
        // The hub reads nothing while the agent floods it.
        let body = vec![1u8; SIZE];
        let mut queued = 0;
        for _ in 0..SENDS {
            match agent.send(&body).await {
                Ok(()) => queued += 1,
                Err(SendToError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // Budget (4 frames) + socket buffers + the agent's queue (4) and
        // the frames in hand: far fewer than the 64 an unbounded hub took.
        assert!(
            queued < SENDS / 2,
            "{queued} of {SENDS} sends queued: the hub read without bound"
        );
        // Nothing queued is lost once the hub reads.
        let mut got = 0;
        while got < queued {
            match tokio::time::timeout(Duration::from_secs(30), hub.next())
                .await
                .unwrap()
            {
                HubEvent::Message {
                    peer: from,
                    payload,
                } => {
                    assert_eq!(
                        (from, payload.decode::<Vec<u8>>().unwrap().len()),
                        (peer, SIZE)
                    );
                    got += 1;
                }
                HubEvent::Joined(_) => {}
                other => panic!("{other:?}"),
            }
        }
    });
}
