//! Lets derived code accept sync or async functions, and plain values or
//! resources, without the user saying which.
//!
//! This is autoref-based dispatch (as `anyhow!` uses): for a value `v`,
//! `(&v).__broadcast_future_kind()` resolves to [`FutureKind`] when `v` is a
//! future (found without auto-ref) and to [`ValueKind`] otherwise (found only
//! after auto-ref). It only works on concrete types, which is what the derive
//! generates code for. Not public API.

use std::future::{IntoFuture, Ready, ready};

use crate::event::{PayloadError, Resource};

/// Tag: the value is a future; await it.
pub struct AwaitTag;
/// Tag: the value is already there.
pub struct ReadyTag;

/// Chosen for futures.
pub trait FutureKind {
    /// Tags a future.
    #[inline]
    fn __broadcast_future_kind(&self) -> AwaitTag {
        AwaitTag
    }
}
impl<F: IntoFuture> FutureKind for F {}

/// Chosen for every other value.
pub trait ValueKind {
    /// Tags a ready value.
    #[inline]
    fn __broadcast_future_kind(&self) -> ReadyTag {
        ReadyTag
    }
}
impl<T: ?Sized> ValueKind for &T {}

impl AwaitTag {
    #[inline]
    pub fn resolve<F: IntoFuture>(self, f: F) -> F::IntoFuture {
        f.into_future()
    }
}

impl ReadyTag {
    #[inline]
    pub fn resolve<T>(self, v: T) -> Ready<T> {
        ready(v)
    }
}

/// Tag: the value is a [`Resource`]; dump it.
pub struct DumpTag;
/// Tag: the value is the payload itself.
pub struct PlainTag;

/// Chosen for resources.
pub trait ResourceKind {
    /// Tags a resource.
    #[inline]
    fn __broadcast_payload_kind(&self) -> DumpTag {
        DumpTag
    }
}
impl<R: Resource> ResourceKind for R {}

/// Chosen for every other value.
pub trait PlainKind {
    /// Tags a plain payload.
    #[inline]
    fn __broadcast_payload_kind(&self) -> PlainTag {
        PlainTag
    }
}
impl<T: ?Sized> PlainKind for &T {}

impl DumpTag {
    #[inline]
    pub async fn resolve<R: Resource>(self, r: R) -> Result<R::Output, PayloadError> {
        r.dump().await
    }
}

impl PlainTag {
    #[inline]
    pub fn resolve<T>(self, v: T) -> Ready<Result<T, PayloadError>> {
        ready(Ok(v))
    }
}

#[cfg(test)]
#[allow(clippy::needless_borrow)] // the borrow is the dispatch being tested
mod tests {
    use super::*;

    async fn double(x: u32) -> u32 {
        x * 2
    }

    struct R(u32);
    impl Resource for R {
        type Output = u32;
        async fn dump(&self) -> Result<u32, PayloadError> {
            Ok(self.0 + 1)
        }
    }

    #[tokio::test]
    async fn futures_are_awaited_values_are_not() {
        let v = double(2);
        assert_eq!((&v).__broadcast_future_kind().resolve(v).await, 4);
        let v = 7u32;
        assert_eq!((&v).__broadcast_future_kind().resolve(v).await, 7);
        let s = String::from("x");
        let v = &s;
        assert_eq!((&v).__broadcast_future_kind().resolve(v).await, "x");
    }

    #[tokio::test]
    async fn resources_are_dumped_values_pass_through() {
        let v = R(1);
        assert_eq!((&v).__broadcast_payload_kind().resolve(v).await.unwrap(), 2);
        let v = 1u32;
        assert_eq!((&v).__broadcast_payload_kind().resolve(v).await.unwrap(), 1);
    }
}
