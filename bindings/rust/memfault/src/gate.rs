// SPDX-License-Identifier: MIT
//! The C API's "setup call" rules, enforced at run time.
//!
//! - `memfault_region_new()`, `memfault_region_free()` and
//!   `memfault_vm_set_handlers()` must not run while a vCPU of the VM is in
//!   `memfault_vcpu_run_dispatch()` (which looks regions up and calls the
//!   handlers) or while another thread looks regions up: [`SetupGate::try_setup`]
//!   (fails with `EBUSY`) and [`SetupGate::setup_blocking`] (drop paths).
//! - `memfault_uffd_free()` must not run while a vCPU is in dispatch, but
//!   page-in handlers it calls (on the service thread, or on the dropping
//!   thread for the faults already queued) may still look regions up:
//!   [`SetupGate::quiesce_blocking`] waits for dispatches only.
//!
//! Dispatches and lookups enter as [`Entry::Dispatch`] and
//! [`Entry::Lookup`]; a lookup from the thread that holds the setup side
//! (a handler called from inside a setup call) passes.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use crate::errno::{Errno, Result};

#[derive(Debug, Default)]
struct State {
    dispatch: usize,
    lookup: usize,
    setup: Option<ThreadId>,
    quiesce: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SetupGate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Dispatch,
    Lookup,
}

pub(crate) struct RunGuard<'a>(&'a SetupGate, Entry);
pub(crate) struct SetupGuard<'a>(&'a SetupGate);
pub(crate) struct QuiesceGuard<'a>(&'a SetupGate);

impl SetupGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&'a self, g: MutexGuard<'a, State>, blocked: impl Fn(&State) -> bool) -> MutexGuard<'a, State> {
        self.changed.wait_while(g, |s| blocked(s)).unwrap_or_else(|e| e.into_inner())
    }

    /// Enter a dispatch or a lookup; waits (briefly) while a setup call is
    /// under way, and a dispatch also while a userfaultfd is being freed.
    pub(crate) fn enter(&self, kind: Entry) -> RunGuard<'_> {
        let me = thread::current().id();
        let g = self.lock();
        let mut g = self.wait(g, |s| {
            s.setup.is_some_and(|t| t != me || kind == Entry::Dispatch) || (kind == Entry::Dispatch && s.quiesce)
        });
        match kind {
            Entry::Dispatch => g.dispatch += 1,
            Entry::Lookup => g.lookup += 1,
        }
        RunGuard(self, kind)
    }

    /// The setup side, or `EBUSY` if anyone is inside.
    pub(crate) fn try_setup(&self) -> Result<SetupGuard<'_>> {
        let mut g = self.lock();
        if g.dispatch + g.lookup > 0 || g.setup.is_some() || g.quiesce {
            return Err(Errno::EBUSY);
        }
        g.setup = Some(thread::current().id());
        Ok(SetupGuard(self))
    }

    /// The setup side, waiting for everyone to leave (drop paths).
    pub(crate) fn setup_blocking(&self) -> SetupGuard<'_> {
        let g = self.lock();
        let mut g = self.wait(g, |s| s.dispatch + s.lookup > 0 || s.setup.is_some() || s.quiesce);
        g.setup = Some(thread::current().id());
        SetupGuard(self)
    }

    /// No dispatch (lookups go on), waiting for the running ones to leave.
    pub(crate) fn quiesce_blocking(&self) -> QuiesceGuard<'_> {
        let g = self.lock();
        let mut g = self.wait(g, |s| s.dispatch > 0 || s.setup.is_some() || s.quiesce);
        g.quiesce = true;
        QuiesceGuard(self)
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        match self.1 {
            Entry::Dispatch => g.dispatch -= 1,
            Entry::Lookup => g.lookup -= 1,
        }
        drop(g);
        self.0.changed.notify_all();
    }
}

impl Drop for SetupGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().setup = None;
        self.0.changed.notify_all();
    }
}

impl Drop for QuiesceGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().quiesce = false;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_excludes_dispatch_and_lookups() {
        let g = SetupGate::default();
        let d = g.enter(Entry::Dispatch);
        let l = g.enter(Entry::Lookup); // lookups nest in a dispatch
        assert_eq!(g.try_setup().err(), Some(Errno::EBUSY));
        drop(d);
        assert!(g.try_setup().is_err());
        drop(l);
        let s = g.try_setup().unwrap();
        assert!(g.try_setup().is_err());
        drop(g.enter(Entry::Lookup)); // from the setup thread itself
        drop(s);
        drop(g.setup_blocking());
    }

    #[test]
    fn quiesce_lets_lookups_through() {
        let g = SetupGate::default();
        let q = g.quiesce_blocking();
        drop(g.enter(Entry::Lookup));
        assert!(g.try_setup().is_err());
        std::thread::scope(|s| {
            let t = s.spawn(|| drop(g.enter(Entry::Dispatch))); // waits for the quiesce
            std::thread::sleep(std::time::Duration::from_millis(10));
            assert!(!t.is_finished());
            drop(q);
            t.join().unwrap();
        });
    }
}
