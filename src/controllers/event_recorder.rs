//! Publishes Events so that each distinct note stays readable.
//!
//! kube's `Recorder`, like client-go's events API, folds every event with the
//! same type, reason, action and objects into one series for six minutes and
//! keeps the first note: a second rotation within that time would read as the
//! first one again ("Rotated (x2): re-issued tenant-a-apiserver-certificate"),
//! and a second unreadable Secret would not be named at all. Here each note has
//! a `Recorder` of its own, so events with different notes are different Events
//! (as client-go's legacy correlator, which keys on the message, does for
//! Kamaji and cert-manager) and repeats of one note still fold into a series.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};

/// How long a note's recorder is kept after its last event: the `Recorder`'s own
/// series window, after which it would start a new Event anyway.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The event recorder of the controllers.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    /// A recorder per note, with the time of its last event.
    by_note: Mutex<HashMap<String, (Recorder, Instant)>>,
}

impl EventRecorder {
    /// Events reported by `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            by_note: Mutex::default(),
        }
    }

    /// Publishes `event` about `regarding`: a new Event for a note not published in
    /// the last six minutes, else one more in that note's series.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let recorder = self.recorder_for(event.note.as_deref().unwrap_or_default(), Instant::now());
        recorder.publish(event, regarding).await
    }

    /// The recorder of `note`, made if needed; recorders idle past the series window
    /// are dropped here, so the map holds only the notes of the last minutes.
    fn recorder_for(&self, note: &str, now: Instant) -> Recorder {
        // The map holds no invariant a panic elsewhere could break: keep using it.
        let mut by_note = self.by_note.lock().unwrap_or_else(PoisonError::into_inner);
        by_note.retain(|_, (_, last)| now.duration_since(*last) < SERIES_WINDOW);
        let (recorder, last) = by_note
            .entry(note.to_string())
            .or_insert_with(|| (Recorder::new(self.client.clone(), self.reporter.clone()), now));
        *last = now;
        recorder.clone()
    }

    /// How many notes have a recorder (for tests).
    #[cfg(test)]
    fn notes(&self) -> usize {
        self.by_note.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> EventRecorder {
        // Never dialled: the test only looks at which notes have a recorder.
        let config = kube::Config::new("https://127.0.0.1:9".parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client");
        let reporter = Reporter {
            controller: "kamaji-rs".into(),
            instance: None,
        };
        EventRecorder::new(client, reporter)
    }

    #[tokio::test]
    async fn each_note_has_a_recorder_of_its_own_until_it_is_idle_for_the_series_window() {
        let events = recorder();
        let start = Instant::now();
        events.recorder_for("re-issued tenant-a-apiserver-certificate", start);
        events.recorder_for("re-issued tenant-a-apiserver-certificate", start);
        assert_eq!(events.notes(), 1, "a repeated note folds into its series");
        events.recorder_for("re-issued tenant-a-front-proxy-client-certificate", start);
        assert_eq!(events.notes(), 2, "another note is another Event");
        let later = start + SERIES_WINDOW;
        events.recorder_for("re-issued tenant-a-admin-kubeconfig", later);
        assert_eq!(events.notes(), 1, "notes idle for the series window are dropped");
    }
}
