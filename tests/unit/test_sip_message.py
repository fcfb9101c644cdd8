"""SIP message parsing/building and digest authentication."""

from voicebot.sip.message import (audio_sdp, digest_authorization, parse, parse_challenge, sdp_audio_address,
                                  tag_of, uri_of)


def test_parse_response_with_compact_headers_and_body():
    raw = (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKabc;rport\r\n"
           b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: cid\r\nCSeq: 7 INVITE\r\n"
           b"m: <sip:b@127.0.0.1:5060>\r\nl: 4\r\n\r\nv=0\n")
    m = parse(raw)
    assert m.is_response and m.status == 200 and m.method == "INVITE"
    assert m.branch == "z9hG4bKabc" and m.call_id == "cid" and m.cseq == (7, "INVITE")
    assert tag_of(m.get("to")) == "2" and uri_of(m.get("contact")) == "sip:b@127.0.0.1:5060"
    assert m.body == "v=0\n"


def test_encode_sets_content_length():
    m = parse(b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\n")
    m.body = "hello"
    assert b"Content-Length: 5\r\n\r\nhello" in m.encode()


def test_digest_rfc2617_example():
    challenge = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    header = digest_authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life",
                                  nc=1, cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header and "nc=00000001" in header


def test_sdp_offer_round_trip():
    sdp = audio_sdp("127.0.0.1", 40000)
    assert sdp_audio_address(sdp) == ("127.0.0.1", 40000)
    assert "a=rtpmap:0 PCMU/8000" in sdp and "telephone-event" in sdp
