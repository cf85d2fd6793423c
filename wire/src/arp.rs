//! Proxy ARP (to be written).
