//! Server-side protection: shed calls beyond a concurrency limit, and rate-limit with a token
//! bucket, answering at once instead of queueing.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Code, Error, Result};

/// Sheds load: at most `max` calls run at once; the next ones are refused with a retryable
/// [`Code::Unavailable`] so the client can take them to another node.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConcurrencyLimitLayer {
    /// Allows `max` calls in flight (shared by every service the layer wraps).
    pub fn new(max: usize) -> ConcurrencyLimitLayer {
        ConcurrencyLimitLayer { permits: Arc::new(Semaphore::new(max)), max }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, permits: self.permits.clone(), max: self.max }
    }
}

/// The service made by [`ConcurrencyLimitLayer`].
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
    max: usize,
}

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<S::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let max = self.max;
            return Box::pin(
                async move { Err(Error::unavailable(format!("server busy: {max} calls already in flight"))) },
            );
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            drop(permit);
            result
        })
    }
}

/// Rate-limits with a token bucket: `rate` calls per second on average, bursts of up to
/// `burst`; calls beyond are refused with [`Code::TooManyRequests`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    refilled: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = (now - self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl RateLimitLayer {
    /// Allows `rate` calls per `per` on average, and bursts of `burst` (shared by every service
    /// the layer wraps).
    pub fn new(rate: u32, per: Duration, burst: u32) -> RateLimitLayer {
        let per_second = f64::from(rate) / per.as_secs_f64().max(f64::EPSILON);
        let burst = f64::from(burst.max(1));
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket { tokens: burst, burst, per_second, refilled: Instant::now() })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit { inner, bucket: self.bucket.clone() }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<S::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admitted = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if !admitted {
            return Box::pin(async { Err(Error::new(Code::TooManyRequests, "rate limit exceeded")) });
        }
        Box::pin(self.inner.call(req))
    }
}
