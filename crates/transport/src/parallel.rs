//! Bounded parallelism over hosts with plain threads, results in input order.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
};

/// How many hosts are worked on at once unless the caller says otherwise.
pub const DEFAULT_PARALLELISM: usize = 16;

/// Calls `f` on every item with at most `parallelism` calls running at once, and returns each
/// item with its result, in input order.
///
/// Every item gets its own result: one host failing does not stop the others, so the caller can
/// report all failures of a phase at once. A panic in `f` is a bug and propagates.
pub fn for_each_host<T, R, E, F>(
    items: impl IntoIterator<Item = T>,
    parallelism: usize,
    f: F,
) -> Vec<(T, Result<R, E>)>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(&T) -> Result<R, E> + Sync,
{
    let items: Vec<T> = items.into_iter().collect();
    let workers = parallelism.max(1).min(items.len());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (items, next, f) = (&items, &next, &f);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if tx.send((i, f(item))).is_err() {
                        break;
                    }
                }
            });
        }
    });
    drop(tx);
    let mut results: Vec<(usize, Result<R, E>)> = rx.into_iter().collect();
    results.sort_by_key(|(i, _)| *i);
    items
        .into_iter()
        .zip(results.into_iter().map(|(_, r)| r))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn keeps_order_and_bounds_concurrency() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let start = Instant::now();
        let out = for_each_host(0..20u64, 4, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Later items finish first, so order must come from the index, not completion.
            std::thread::sleep(Duration::from_millis(40 - 2 * i));
            running.fetch_sub(1, Ordering::SeqCst);
            if i % 5 == 0 {
                Err(format!("item {i}"))
            } else {
                Ok(i * 10)
            }
        });
        assert_eq!(
            out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        for (i, r) in &out {
            match r {
                Ok(v) => assert_eq!(*v, i * 10),
                Err(e) => assert_eq!(e, &format!("item {i}")),
            }
        }
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(start.elapsed() < Duration::from_millis(20 * 40));
    }

    #[test]
    fn handles_empty_input_and_zero_parallelism() {
        let out: Vec<(u8, Result<u8, ()>)> = for_each_host(Vec::new(), 0, |&x| Ok(x));
        assert!(out.is_empty());
        let out: Vec<(u8, Result<u8, ()>)> = for_each_host([1, 2], 0, |&x| Ok(x + 1));
        assert_eq!(out, vec![(1, Ok(2)), (2, Ok(3))]);
    }
}
