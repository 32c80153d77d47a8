//! Live capture from one or more interfaces through libpcap (TPACKET_V3 on Linux unless
//! immediate mode is asked for), read by one thread with `poll(2)` over all handles.
//! Several readers share an interface through a kernel `PACKET_FANOUT` group in hash mode:
//! each opens its own handle and the kernel hands every packet to one of them by a symmetric
//! flow hash (both directions of a plain TCP connection go to the same one). Tunnelled
//! flows, IPv6 with a flow label on one side only, and IP fragments may be split over
//! readers; the workers, sharded by apitap's own flow key, still get all of them.
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
    /// Whether, and how, each handle joins a kernel fanout group.
    pub fanout: Fanout,
}

/// Kernel packet fanout (`PACKET_FANOUT`, hash mode) of the handles of one reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fanout {
    /// No fanout: this reader sees every packet.
    #[default]
    Off,
    /// Each interface's handle starts a new group with an id the kernel picks (unused on
    /// this host), read back with [`LiveSource::fanout_groups`].
    New,
    /// Each interface's handle joins the group of that id (one per interface, in order).
    Join(Vec<u16>),
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
    /// The fanout group of each interface's handle, when in one.
    fanout_groups: Vec<u16>,
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
        let mut fanout_groups = Vec::new();
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
            let group = match &opts.fanout {
                Fanout::Off => None,
                Fanout::New => Some(None),
                Fanout::Join(ids) => match ids.get(interfaces.len()) {
                    Some(&id) => Some(Some(id)),
                    None => {
                        return Err(WireError::Open {
                            path: name.clone(),
                            msg: "no packet fanout group to join".into(),
                        })
                    }
                },
            };
            if let Some(group) = group {
                let id = join_fanout(&cap, group).map_err(|e| WireError::Open {
                    path: name.clone(),
                    msg: format!("cannot join a packet fanout group: {e}"),
                })?;
                fanout_groups.push(id);
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
            fanout_groups,
            cursor: 0,
        })
    }

    /// The fanout group id of each interface's handle (empty without fanout): what the
    /// other readers of the run pass as [`Fanout::Join`].
    pub fn fanout_groups(&self) -> &[u16] {
        &self.fanout_groups
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

/// Joins the AF_PACKET socket under `cap` to a kernel fanout group in hash mode (a
/// symmetric flow hash picks the member): group `Some(id)`, or with `None` a new group
/// whose unused id the kernel picks. Returns the group's id. Every member must open the
/// same interface; the group lives as long as one member's socket does.
#[allow(unsafe_code)]
fn join_fanout(cap: &Capture<Active>, group: Option<u16>) -> std::io::Result<u16> {
    use std::os::fd::AsRawFd;
    let fd = cap.as_fd().as_raw_fd();
    let (id, flags) = match group {
        Some(id) => (id, 0),
        None => (0, libc::PACKET_FANOUT_FLAG_UNIQUEID),
    };
    let mode = (libc::PACKET_FANOUT_HASH | flags) as libc::c_int;
    let arg: libc::c_int = libc::c_int::from(id) | mode << 16;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `fd` is libpcap's open socket, borrowed for the call; the option value is a
    // c_int on the stack that outlives the call, and `len` is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            std::ptr::from_ref(&arg).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    // SAFETY: as above; the kernel writes at most `len` bytes into `got` and sets `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            std::ptr::from_mut(&mut got).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The low 16 bits are the id (then the mode and flags).
    Ok((got & 0xffff) as u16)
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
