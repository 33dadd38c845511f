//! A bounded pool of pre-generated private keys, so a rotation does not wait for
//! RSA key generation (66 ms a key at RSA-2048, 700 ms at RSA-4096; a CA
//! rotation re-issues about a dozen keys). One background thread keeps the pool
//! full; [`PrivateKey::generate`] takes from it when one is installed for the
//! algorithm asked, and generates inline otherwise, so a drained or absent pool
//! only costs time, never correctness.
//!
//! The pool is process-wide on purpose: it is a cache of random keys, like a
//! thread pool a resource of the process, and keeps the issuing functions' pure
//! signatures. Pooled keys live only in memory and are handed out once.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use super::keys::{KeyAlgorithm, PrivateKey};

static POOL: OnceLock<Arc<KeyPool>> = OnceLock::new();

/// Pre-generated keys of one algorithm, at most `capacity` of them.
pub struct KeyPool {
    algorithm: KeyAlgorithm,
    capacity: usize,
    keys: Mutex<VecDeque<PrivateKey>>,
    taken: Condvar,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl KeyPool {
    /// The algorithm of the pooled keys.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Keys ready now.
    pub fn ready(&self) -> usize {
        self.keys.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// The pool's size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys served from the pool, and keys that had to be generated inline.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn take(&self) -> Option<PrivateKey> {
        let key = self.keys.lock().ok()?.pop_front();
        match &key {
            Some(_) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.taken.notify_one();
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        key
    }

    /// Refills forever: waits while full, generates one key outside the lock.
    fn fill(&self) {
        loop {
            {
                let Ok(mut keys) = self.keys.lock() else { return };
                while keys.len() >= self.capacity {
                    keys = match self.taken.wait(keys) {
                        Ok(keys) => keys,
                        Err(_) => return,
                    };
                }
            }
            match PrivateKey::generate_fresh(self.algorithm) {
                Ok(key) => match self.keys.lock() {
                    Ok(mut keys) => keys.push_back(key),
                    Err(_) => return,
                },
                // Generation failing is not transient; inline generation reports it.
                Err(_) => return,
            }
        }
    }
}

/// Installs the process-wide pool for `algorithm` and starts filling it. A second
/// call returns the pool already installed. `capacity == 0` installs nothing.
pub fn install(algorithm: KeyAlgorithm, capacity: usize) -> Option<Arc<KeyPool>> {
    if capacity == 0 {
        return None;
    }
    let pool = POOL.get_or_init(|| {
        let pool = Arc::new(KeyPool {
            algorithm,
            capacity,
            keys: Mutex::new(VecDeque::with_capacity(capacity)),
            taken: Condvar::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let filler = pool.clone();
        // A plain thread: key generation is CPU work that must not occupy the async runtime.
        let spawned = std::thread::Builder::new()
            .name("key-pool".into())
            .spawn(move || filler.fill());
        if spawned.is_err() {
            tracing::warn!("could not start the key pool thread; keys are generated inline");
        }
        pool
    });
    Some(pool.clone())
}

/// A pooled key of `algorithm`, if a pool for it is installed and not empty.
pub(crate) fn take(algorithm: KeyAlgorithm) -> Option<PrivateKey> {
    POOL.get()
        .filter(|pool| pool.algorithm == algorithm)
        .and_then(|pool| pool.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_fills_up_to_capacity_and_hands_out_distinct_keys() {
        let pool = install(KeyAlgorithm::EcdsaP256, 4).expect("installed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < pool.capacity() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(pool.ready(), 4, "filled to capacity, not beyond");
        let (hits_before, _) = pool.hits_and_misses();
        let a = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        let b = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        assert_ne!(a.pem(), b.pem(), "a key is handed out once");
        assert!(
            pool.hits_and_misses().0 >= hits_before + 2,
            "served from the pool"
        );
        // Another algorithm is generated inline and leaves the pool alone.
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("key");
        assert_eq!(rsa.algorithm(), Some(KeyAlgorithm::Rsa2048));
    }
}
