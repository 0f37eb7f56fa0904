//! The `prack-*` scenarios of `cargo xtask sipp`: reliable provisional responses (RFC 3262)
//! with SIPp on the other side, in both roles.
//!
//! - `prack-uas`: SIPp's UAC requires 100rel (`Require: 100rel`, an SDP offer) of example 20
//!   in `--mode ring`. The 180 must come reliably (`Require: 100rel` and an `RSeq`); SIPp
//!   PRACKs it with the `RAck` built from that RSeq, must get 200 for the PRACK, then the 200
//!   for the INVITE with our SDP answer; it ACKs and hangs up.
//! - `prack-uac`: example 20's UAC (its INVITE says `Supported: 100rel`) against a SIPp UAS
//!   whose 183 with SDP is reliable (`Require: 100rel`, `RSeq: 1`): SIPp answers only once our
//!   PRACK came with `RAck: 1 <cseq> INVITE` (200 for it, then 200 for the INVITE).
//! - `b2bua-prack`: both roles at once, with early media. SIPp caller (`Supported: 100rel`) ->
//!   example 20 as B2BUA -> SIPp callee whose reliable 183 with SDP our B leg PRACKs; the
//!   B2BUA's early media on the A leg is a reliable 183 with our SDP, which the caller PRACKs
//!   only after 300 ms while the callee answers at once: the A leg's 200 must wait for that
//!   PRACK (§3), or the caller sees a 200 it does not expect and fails the call.

use super::bridging::{CALLEE_LINES, b_leg_invite, through_b2bua};
use super::{
    Ctx, OK_TO_LAST, PCMU, SippServer, Verdict, ack, against_uas, bye, ensure, in_dialog, invite,
    scenario, uac,
};

pub(super) fn prack_uas(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "ring", "--ring-ms", "500"],
        "prack_uac.xml",
        2,
        &[
            ("incoming", "2"),
            ("answered", "2"),
            ("hangups_peer", "2"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn prack_uac(ctx: &Ctx) -> Verdict {
    let server = SippServer::start(ctx, "prack_uas.xml", 2, false, "sipp-uas.log")?;
    let target = format!("sip:service@127.0.0.1:{}", server.port);
    let (status, summary) = uac(
        ctx,
        &["--call", &target, "--calls", "2", "--duration-ms", "100"],
        "uac.stderr.log",
    )?;
    let finished = server.finish(ctx);
    ensure(status.success(), || {
        format!("example 20 (UAC) exited with {status}: {}", summary.line)
    })?;
    finished?;
    summary.expect(&[("calls", "2"), ("ok", "2")])?;
    Ok(summary.line)
}

pub(super) fn b2bua_prack(ctx: &Ctx) -> Verdict {
    through_b2bua(
        ctx,
        "b2bua_uac_prack.xml",
        "b2bua_uas_prack.xml",
        2,
        &[
            ("incoming", "2"),
            ("answered", "2"),
            ("b_legs_answered", "2"),
            ("bridged", "2"),
            ("hangups_peer", "2"),
            ("hangups_ours", "2"),
            ("failed", "0"),
        ],
    )
}

/// SIPp's INVITE (an SDP offer) with `line` (`Require: 100rel` …) added.
fn invite_with(line: &str) -> String {
    let invite = invite(PCMU);
    let content_type = "      Content-Type: application/sdp\n";
    debug_assert!(invite.contains(content_type));
    invite.replacen(content_type, &format!("      {line}\n{content_type}"), 1)
}

/// The caller receives a reliable `status` (its RSeq kept as `rseq`); `checks` are further
/// actions.
fn reliable_provisional(status: u16, checks: &str) -> String {
    format!(
        r#"  <recv response="100" optional="true"/>
  <recv response="{status}">
    <action>
      <ereg regexp="100rel" search_in="hdr" header="Require:" check_it="true" assign_to="required"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="RSeq:" check_it="true" assign_to="rseq"/>
{checks}    </action>
  </recv>
"#
    )
}

/// The caller's PRACK (CSeq 2) with the RAck built from `rseq`, and its 200.
fn prack() -> String {
    in_dialog(
        "PRACK",
        2,
        "      RAck: [$rseq] 1 INVITE\n      Content-Length: 0\n",
    ) + r#"  <recv response="200">
    <action>
      <ereg regexp="PRACK" search_in="hdr" header="CSeq:" check_it="true" assign_to="prack_answered"/>
    </action>
  </recv>
"#
}

/// The caller's 200 for the INVITE, with an SDP answer (`more`: further actions).
fn answer_to_invite(more: &str) -> String {
    format!(
        r#"  <recv response="200" rtd="true">
    <action>
      <ereg regexp="INVITE" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_answered"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" check_it="true" assign_to="sdp_answer"/>
{more}    </action>
  </recv>
"#
    )
}

/// Actions on the INVITE a callee receives: it offers 100rel; its Via and CSeq number are
/// kept for the 200 that goes after the PRACK (by then `last_` is the PRACK).
const REMEMBER_INVITE: &str = r#"      <ereg regexp="100rel" search_in="hdr" header="Supported:" check_it="true" assign_to="offers_100rel"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="Via:" assign_to="invite_via"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="invite_cseq"/>
"#;

/// The callee's SDP (`o=callee`).
const CALLEE_SDP: &str = "      v=0
      o=callee 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15";

/// The callee's reliable 183 with SDP (RSeq 1), our PRACK for it (checked), 200 for the PRACK,
/// then 200 for the INVITE and its ACK.
fn callee_reliable_183_then_answer() -> String {
    format!(
        r#"  <send>
    <![CDATA[
      SIP/2.0 183 Session Progress
{CALLEE_LINES}
      Require: 100rel
      RSeq: 1
      Content-Type: application/sdp
      Content-Length: [len]

{CALLEE_SDP}
    ]]>
  </send>
  <recv request="PRACK" crlf="true">
    <action>
      <ereg regexp="^ *1 [0-9]+ INVITE" search_in="hdr" header="RAck:" check_it="true" assign_to="rack"/>
    </action>
  </recv>
{OK_TO_LAST}  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      Via: [$invite_via]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

{CALLEE_SDP}
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"#
    )
}

pub(super) fn scenario_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "prack_uac.xml",
            scenario(
                "caller requiring 100rel: reliable 180, PRACK, 200 PRACK, 200 INVITE, BYE",
                &(invite_with("Require: 100rel")
                    + &reliable_provisional(180, "")
                    + &prack()
                    + &answer_to_invite("")
                    + &ack(1)
                    + "  <pause milliseconds=\"100\"/>\n"
                    + &bye(3)),
            ),
        ),
        (
            "prack_uas.xml",
            scenario(
                "callee: reliable 183 with SDP, our PRACK, 200 PRACK, 200 INVITE, our BYE",
                &(r#"  <recv request="INVITE" crlf="true">
    <action>
"#
                .to_owned()
                    + REMEMBER_INVITE
                    + "    </action>\n  </recv>\n"
                    + &callee_reliable_183_then_answer()
                    + "  <recv request=\"BYE\"/>\n"
                    + OK_TO_LAST),
            ),
        ),
        (
            "b2bua_uac_prack.xml",
            scenario(
                "caller offering 100rel: reliable 183 with our SDP, PRACK after 300 ms, 200",
                &(invite_with("Supported: 100rel")
                    + &reliable_provisional(
                        183,
                        r#"      <ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" check_it="true" assign_to="early_sdp"/>
      <ereg regexp="o=callee " search_in="body" check_it_inverse="true" assign_to="b_early_leaked"/>
"#,
                    )
                    // The callee answers meanwhile: a 200 now would fail the call (§3).
                    + "  <pause milliseconds=\"300\"/>\n"
                    + &prack()
                    + &answer_to_invite(
                        r#"      <ereg regexp="o=callee " search_in="body" check_it_inverse="true" assign_to="b_answer_leaked"/>
"#,
                    )
                    + &ack(1)
                    + "  <pause milliseconds=\"100\"/>\n"
                    + &bye(3)),
            ),
        ),
        (
            "b2bua_uas_prack.xml",
            scenario(
                "callee: reliable 183 with SDP, the B leg's PRACK, 200, BYE from the caller's side",
                &(b_leg_invite("", REMEMBER_INVITE)
                    + &callee_reliable_183_then_answer()
                    + "  <recv request=\"BYE\"/>\n"
                    + OK_TO_LAST),
            ),
        ),
    ]
}
