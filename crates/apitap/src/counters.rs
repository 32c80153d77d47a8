//! Every counter of each stage by name, for the run summary (and later the metrics
//! endpoint). Destructuring makes a new counter a compile error here until it is listed.

use apitap_flow::ReassemblyStats;
use apitap_http::HttpStats;
use serde_json::{json, Value};

/// Reassembly counters by name.
pub fn reassembly(s: &ReassemblyStats) -> Value {
    let ReassemblyStats {
        segments,
        in_order_segments,
        ooo_segments_buffered,
        retransmitted_segments,
        partial_overlaps,
        overlap_conflicts,
        ooo_overflow_flushes,
        out_of_window,
        gaps,
        gap_bytes,
        truncated_payload_bytes,
        data_after_close,
    } = s;
    json!({
        "segments": segments,
        "in_order_segments": in_order_segments,
        "ooo_segments_buffered": ooo_segments_buffered,
        "retransmitted_segments": retransmitted_segments,
        "partial_overlaps": partial_overlaps,
        "overlap_conflicts": overlap_conflicts,
        "ooo_overflow_flushes": ooo_overflow_flushes,
        "out_of_window": out_of_window,
        "gaps": gaps,
        "gap_bytes": gap_bytes,
        "truncated_payload_bytes": truncated_payload_bytes,
        "data_after_close": data_after_close,
    })
}

/// HTTP parser counters by name.
pub fn http(s: &HttpStats) -> Value {
    let HttpStats {
        requests,
        responses,
        interim_responses,
        transactions_emitted,
        bytes_skipped,
        resyncs,
        heads_too_large,
        invalid_start_lines,
        pipeline_overflows,
        upgrades,
        passthrough_bytes,
        gaps_in_body,
        gaps_resync,
        non_http_connections,
        bodies_captured,
        body_bytes_captured,
        bodies_truncated,
        bodies_decoded,
        decompression_bombs,
        body_decode_errors,
    } = s;
    json!({
        "requests": requests,
        "responses": responses,
        "interim_responses": interim_responses,
        "transactions_emitted": transactions_emitted,
        "bytes_skipped": bytes_skipped,
        "resyncs": resyncs,
        "heads_too_large": heads_too_large,
        "invalid_start_lines": invalid_start_lines,
        "pipeline_overflows": pipeline_overflows,
        "upgrades": upgrades,
        "passthrough_bytes": passthrough_bytes,
        "gaps_in_body": gaps_in_body,
        "gaps_resync": gaps_resync,
        "non_http_connections": non_http_connections,
        "bodies_captured": bodies_captured,
        "body_bytes_captured": body_bytes_captured,
        "bodies_truncated": bodies_truncated,
        "bodies_decoded": bodies_decoded,
        "decompression_bombs": decompression_bombs,
        "body_decode_errors": body_decode_errors,
    })
}

/// Kafka sink counters by name.
pub fn kafka(s: &apitap_sink::KafkaStats) -> Value {
    let apitap_sink::KafkaStats {
        produced,
        delivered,
        retried,
        failed,
        dropped,
        too_large,
        undelivered_at_close,
        queue_depth,
        queue_depth_max,
        delivery_latency_us_sum,
        delivery_latency_us_max,
    } = s;
    let avg = delivery_latency_us_sum.checked_div(*delivered).unwrap_or(0);
    json!({
        "produced": produced,
        "delivered": delivered,
        "retried": retried,
        "failed": failed,
        "dropped": dropped,
        "too_large": too_large,
        "undelivered_at_close": undelivered_at_close,
        "queue_depth": queue_depth,
        "queue_depth_max": queue_depth_max,
        "delivery_latency_us_avg": avg,
        "delivery_latency_us_max": delivery_latency_us_max,
    })
}
