//! Live updates in the browser: an `EventSource` on `/api/live`, turned into a signal
//! that resources can depend on. The browser reconnects a dropped stream by itself.
use leptos::prelude::*;

use crate::domain::RunNotice;
#[cfg(feature = "hydrate")]
use crate::domain::LIVE_PATH;

/// The latest run update, and a counter that moves when the page should refetch: a
/// run ended, or the stream (re)opened (and may have missed some).
#[derive(Clone, Copy)]
pub struct LiveRuns {
    pub last: ReadSignal<Option<RunNotice>>,
    pub finished: ReadSignal<u64>,
}

/// Subscribes to the signed-in user's run updates for as long as the calling component
/// lives. On the server it returns signals that never move.
pub fn use_live_runs() -> LiveRuns {
    let (last, set_last) = signal(None::<RunNotice>);
    let (finished, set_finished) = signal(0u64);

    #[cfg(feature = "hydrate")]
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            connect(set_last, set_finished);
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (set_last, set_finished);

    LiveRuns { last, finished }
}

#[cfg(feature = "hydrate")]
fn connect(set_last: WriteSignal<Option<RunNotice>>, set_finished: WriteSignal<u64>) {
    use send_wrapper::SendWrapper;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{Event, EventSource, MessageEvent};

    let Ok(source) = EventSource::new(LIVE_PATH) else {
        return;
    };
    let on_run = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        if let Ok(notice) = serde_json::from_str::<RunNotice>(&text) {
            if notice.status.is_final() {
                set_finished.update(|n| *n += 1);
            }
            set_last.set(Some(notice));
        }
    });
    let on_resync = Closure::<dyn FnMut(Event)>::new(move |_| set_finished.update(|n| *n += 1));
    // Opened, or reopened: updates may have been missed before (between the page's
    // first fetch and this stream's start) or while the stream was down.
    let on_open = Closure::<dyn FnMut(Event)>::new(move |_| set_finished.update(|n| *n += 1));
    let _ = source.add_event_listener_with_callback("run", on_run.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback("resync", on_resync.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback("open", on_open.as_ref().unchecked_ref());

    let held = SendWrapper::new((source, on_run, on_resync, on_open));
    on_cleanup(move || {
        let (source, ..) = held.take();
        source.close();
    });
}
