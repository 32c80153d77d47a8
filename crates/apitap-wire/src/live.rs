//! Live capture from one or more interfaces through libpcap (TPACKET_V3 on Linux unless
//! immediate mode is asked for), read by one thread with `poll(2)` over all handles.
//!
//! Handles are opened for receive only: apitap never calls `pcap_inject`/`pcap_sendpacket`.

use crate::decode::LinkType;
use crate::source::{RawPacket, WireError};
use apitap_core::Timestamp;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use pcap::{Active, Capture, Precision};
use std::os::fd::AsFd;

/// How each interface is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Bytes kept of each frame.
    pub snaplen: i32,
    /// Put the interface in promiscuous mode (needed on a SPAN/TAP port).
    pub promiscuous: bool,
    /// Deliver each packet at once instead of in kernel blocks (lower latency, more
    /// wake-ups; libpcap then uses TPACKET_V2).
    pub immediate: bool,
    /// Kernel ring size in bytes.
    pub buffer_bytes: i32,
    /// How long the kernel may hold a partly filled block, in milliseconds.
    pub block_timeout_ms: i32,
    /// BPF filter applied in the kernel; empty captures everything.
    pub bpf: String,
}

/// Counters of one interface, from libpcap and from reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Frames read by apitap.
    pub packets: u64,
    /// Bytes of the frames read (as captured).
    pub bytes: u64,
    /// Frames the kernel dropped because the ring was full (`ps_drop`).
    pub kernel_dropped: u64,
    /// Frames the interface or driver dropped (`ps_ifdrop`).
    pub interface_dropped: u64,
}

struct Interface {
    cap: Capture<Active>,
    link: LinkType,
    stats: InterfaceStats,
    /// libpcap's u32 counters at the last read, to extend them to u64 across wraps.
    last_drop: u32,
    last_ifdrop: u32,
}

/// Reads frames from live interfaces.
pub struct LiveSource {
    interfaces: Vec<Interface>,
    /// Next interface to read first, so a busy one cannot starve the others.
    cursor: usize,
}

impl LiveSource {
    /// Opens every interface (needs CAP_NET_RAW) and applies the filter. Fails, naming the
    /// interface, if one cannot be opened or its link type is not decoded.
    pub fn open(names: &[String], opts: &CaptureOptions) -> Result<LiveSource, WireError> {
        if names.is_empty() {
            return Err(WireError::Open {
                path: "(no interface)".into(),
                msg: "no capture interface given (-i IFACE or capture.interfaces)".into(),
            });
        }
        let mut interfaces = Vec::with_capacity(names.len());
        for name in names {
            let open_err = |e: pcap::Error| WireError::Open {
                path: name.clone(),
                msg: pcap_msg(&e),
            };
            let cap = Capture::from_device(name.as_str())
                .map_err(open_err)?
                .snaplen(opts.snaplen)
                .promisc(opts.promiscuous)
                .immediate_mode(opts.immediate)
                .buffer_size(opts.buffer_bytes)
                .timeout(opts.block_timeout_ms)
                .precision(Precision::Nano)
                .open()
                .map_err(open_err)?;
            let mut cap = cap.setnonblock().map_err(open_err)?;
            if !opts.bpf.is_empty() {
                cap.filter(&opts.bpf, true).map_err(|e| WireError::Open {
                    path: name.clone(),
                    msg: format!("bad BPF filter {:?}: {}", opts.bpf, pcap_msg(&e)),
                })?;
            }
            let dlt = cap.get_datalink();
            let Some(link) = LinkType::from_linktype(dlt.0) else {
                return Err(WireError::UnsupportedLinkType {
                    path: name.clone(),
                    code: dlt.0,
                    name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
                });
            };
            interfaces.push(Interface {
                cap,
                link,
                stats: InterfaceStats {
                    name: name.clone(),
                    ..InterfaceStats::default()
                },
                last_drop: 0,
                last_ifdrop: 0,
            });
        }
        Ok(LiveSource {
            interfaces,
            cursor: 0,
        })
    }

    /// Calls `on_packet` for up to `budget` frames that are ready on any interface. When
    /// none is ready, waits up to `wait_ms` for one and returns 0 if none came (or a
    /// signal interrupted the wait). Returns the number of frames delivered.
    pub fn read(
        &mut self,
        budget: usize,
        wait_ms: u16,
        on_packet: &mut dyn FnMut(RawPacket<'_>),
    ) -> Result<usize, WireError> {
        let delivered = self.read_ready(budget, on_packet)?;
        if delivered > 0 {
            return Ok(delivered);
        }
        let mut fds: Vec<PollFd<'_>> = self
            .interfaces
            .iter()
            .map(|i| PollFd::new(i.cap.as_fd(), PollFlags::POLLIN))
            .collect();
        match nix::poll::poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(WireError::Open {
                    path: "(capture)".into(),
                    msg: format!("poll failed: {e}"),
                })
            }
        }
        drop(fds);
        self.read_ready(budget, on_packet)
    }

    /// Reads without waiting, round-robin over the interfaces.
    fn read_ready(
        &mut self,
        budget: usize,
        on_packet: &mut dyn FnMut(RawPacket<'_>),
    ) -> Result<usize, WireError> {
        let n = self.interfaces.len();
        let mut delivered = 0;
        let mut idle = 0;
        while delivered < budget && idle < n {
            let i = self.cursor % n;
            self.cursor = (i + 1) % n;
            let Some(iface) = self.interfaces.get_mut(i) else {
                break;
            };
            match iface.cap.next_packet() {
                Ok(p) => {
                    idle = 0;
                    delivered += 1;
                    iface.stats.packets += 1;
                    iface.stats.bytes += u64::from(p.header.caplen);
                    on_packet(RawPacket {
                        ts: packet_time(p.header),
                        data: p.data,
                        wire_len: p.header.len,
                        link: iface.link,
                    });
                }
                Err(pcap::Error::TimeoutExpired) => idle += 1,
                Err(e) => {
                    return Err(WireError::Corrupt {
                        path: iface.stats.name.clone(),
                        packet: iface.stats.packets,
                        msg: pcap_msg(&e),
                    })
                }
            }
        }
        Ok(delivered)
    }

    /// Current counters of every interface (asks the kernel for its drop counts).
    pub fn stats(&mut self) -> Vec<InterfaceStats> {
        for iface in &mut self.interfaces {
            if let Ok(s) = iface.cap.stats() {
                iface.stats.kernel_dropped += u64::from(s.dropped.wrapping_sub(iface.last_drop));
                iface.stats.interface_dropped +=
                    u64::from(s.if_dropped.wrapping_sub(iface.last_ifdrop));
                iface.last_drop = s.dropped;
                iface.last_ifdrop = s.if_dropped;
            }
        }
        self.interfaces.iter().map(|i| i.stats.clone()).collect()
    }
}

/// One line per capture device libpcap can open: name, description, flags, addresses.
pub fn list_interfaces() -> Result<Vec<String>, WireError> {
    let devices = pcap::Device::list().map_err(|e| WireError::Open {
        path: "(devices)".into(),
        msg: pcap_msg(&e),
    })?;
    Ok(devices
        .into_iter()
        .map(|d| {
            let mut flags = Vec::new();
            if d.flags.is_up() {
                flags.push("up");
            }
            if d.flags.is_running() {
                flags.push("running");
            }
            if d.flags.is_loopback() {
                flags.push("loopback");
            }
            let addrs: Vec<String> = d.addresses.iter().map(|a| a.addr.to_string()).collect();
            format!(
                "{}\t{}\t{}\t{}",
                d.name,
                flags.join(","),
                addrs.join(","),
                d.desc.unwrap_or_default()
            )
        })
        .collect())
}

fn pcap_msg(e: &pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(s) => s.clone(),
        other => other.to_string(),
    }
}

// time_t/suseconds_t are i64 on 64-bit Linux but not everywhere: keep the conversions.
#[allow(clippy::useless_conversion)]
fn packet_time(h: &pcap::PacketHeader) -> Timestamp {
    Timestamp::from_parts(i64::from(h.ts.tv_sec), i64::from(h.ts.tv_usec))
}
