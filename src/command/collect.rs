//! `exwatch collect`: many sensors' events from Redis to one EVE file per sensor, and the
//! report of everything collected kept current ([`crate::collect`] does the work).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Config, Error, Outcome};
use crate::collect;
use crate::report::Meta;

/// Everything `collect` needs, validated.
pub struct Settings {
    pub collect: collect::Settings,
    pub config: Config,
    pub meta: Meta,
    pub metrics: Option<SocketAddr>,
}

/// Collects until SIGTERM or SIGINT ([`Outcome::Clean`]); Redis or the output directory
/// out of reach is the error.
pub fn run(settings: Settings) -> Result<Outcome, Error> {
    let listener = match settings.metrics {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?),
        None => None,
    };
    let control = collect::Control::default();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once, should a clean stop hang.
        signal_hook::flag::register_conditional_shutdown(signal, 2, Arc::clone(&control.stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&control.stop)))
            .map_err(|e| format!("installing signal handlers: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&control.reopen))
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let shared = collect::Shared::new();
    let config = &settings.config;
    let outcome = std::thread::scope(|scope| {
        let server = listener.map(|l| scope.spawn(|| collect::metrics::serve(l, &shared, &control)));
        let outcome = collect::run(
            &settings.collect,
            (Arc::clone(&config.policy), Arc::clone(&config.topology), settings.meta.clone()),
            &control,
            &shared,
        );
        control.stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(e))) = server.map(|s| s.join()) {
            eprintln!("exwatch: metrics endpoint stopped: {e}");
        }
        outcome
    });
    let counts = outcome.map_err(|e| e.to_string())?;
    eprintln!(
        "exwatch collect: {} events written and acknowledged ({} read again from the pending list, {} of them found already written), {} entries without an eve field, {} unreadable lines; {} report(s) written",
        counts.events, counts.pending_reread, counts.already_written, counts.without_eve, counts.unreadable, counts.reports
    );
    Ok(Outcome::Clean)
}
