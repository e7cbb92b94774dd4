//! Delivery across processes through Redis (feature `redis`).
