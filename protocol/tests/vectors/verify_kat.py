"""Independent check of Comity's wire format (docs/protocol.md) in Python.

Re-derives every identity, certificate, envelope (signature, HPKE
decryption built by hand from RFC 9180, commitment, digests) and receipt in
kat-v1.json, and decodes its session frames; then, in kat-attachment-v1.json,
opens the envelope that carries an attachment, decodes its manifest, checks
the chunk table against the tree root, decrypts every chunk with STREAM
(ChaCha20-Poly1305, checking every tag) and checks the tree root, the size
and the whole-file SHA-256 — sharing no code with the Rust implementation.

    python3 -m pip install cryptography
    python3 protocol/tests/vectors/verify_kat.py [kat-v1.json [kat-attachment-v1.json]]

Without arguments it reads both files beside this script.
"""
# Independent re-implementation of the Comity v1 wire format from docs/protocol.md
import json, hashlib, hmac, struct, base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey, Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization
from cryptography.exceptions import InvalidTag

D = lambda s: s.encode() + b"\0"
ENVELOPE_SIGNATURE=D("comity/v1/envelope-signature"); HPKE_INFO=D("comity/v1/hpke-info")
ENVELOPE_AAD=D("comity/v1/envelope-aad"); BODY_COMMITMENT=D("comity/v1/body-commitment")
CIPHERTEXT_DIGEST=D("comity/v1/ciphertext-digest"); ENVELOPE_DIGEST=D("comity/v1/envelope-digest")
RECEIPT_SIGNATURE=D("comity/v1/receipt-signature"); ENCRYPTION_KEY_SIGNATURE=D("comity/v1/encryption-key-signature")
NODE_ID_CHECKSUM=D("comity/v1/node-id-checksum"); ATTACHMENT_CHUNK_AAD=D("comity/v1/attachment-chunk")
RESTORATION_STATEMENT_SIGNATURE=D("comity/v1/restoration-statement-signature")
IDENTITY_TRANSITION_SIGNATURE=D("comity/v1/identity-transition-signature")
sha = lambda *p: hashlib.sha256(b"".join(p)).digest()

def ext(salt, ikm): return hmac.new(salt or b"\0"*32, ikm, hashlib.sha256).digest()
def exp(prk, info, L):
    out=b""; t=b""; i=1
    while len(out)<L:
        t=hmac.new(prk, t+info+bytes([i]), hashlib.sha256).digest(); out+=t; i+=1
    return out[:L]
KEM_SUITE=b"KEM"+struct.pack(">H",0x20); HPKE_SUITE=b"HPKE"+struct.pack(">HHH",0x20,1,3)
def lext(suite, salt, label, ikm): return ext(salt, b"HPKE-v1"+suite+label+ikm)
def lexp(suite, prk, label, info, L): return exp(prk, struct.pack(">H",L)+b"HPKE-v1"+suite+label+info, L)
def derive_keypair(ikm):
    prk=lext(KEM_SUITE,b"",b"dkp_prk",ikm); sk=lexp(KEM_SUITE,prk,b"sk",b"",32)
    priv=X25519PrivateKey.from_private_bytes(sk)
    return priv, priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
def hpke_open(priv, pkR, enc, info, aad, ct):
    dh=priv.exchange(X25519PublicKey.from_public_bytes(enc))
    prk=lext(KEM_SUITE,b"",b"eae_prk",dh); ss=lexp(KEM_SUITE,prk,b"shared_secret",enc+pkR,32)
    psk_id_hash=lext(HPKE_SUITE,b"",b"psk_id_hash",b""); info_hash=lext(HPKE_SUITE,b"",b"info_hash",info)
    ctx=b"\x00"+psk_id_hash+info_hash; secret=lext(HPKE_SUITE,ss,b"secret",b"")
    key=lexp(HPKE_SUITE,secret,b"key",ctx,32); nonce=lexp(HPKE_SUITE,secret,b"base_nonce",ctx,12)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)

def node_id(key):
    raw=key+sha(NODE_ID_CHECKSUM,key)[:3]
    s=base64.b32encode(raw).decode().lower().rstrip("=")
    assert len(s)==56
    return "-".join(s[i:i+8] for i in range(0,56,8))

def frame(b, ty):
    assert b[:4]==b"CMTY" and b[4]==1 and b[5]==ty, b[:6]; return b[6:]

import os
HERE=os.path.dirname(os.path.abspath(__file__))
KAT=sys.argv[1] if len(sys.argv)>1 else os.path.join(HERE,"kat-v1.json")
ATT=sys.argv[2] if len(sys.argv)>2 else os.path.join(HERE,"kat-attachment-v1.json")
kat=json.load(open(KAT))
ids={}
for name,i in kat["identities"].items():
    sk=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(i["identity_seed"]))
    pk=sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert pk.hex()==i["public_key"]; assert node_id(pk)==i["node_id"], (node_id(pk), i["node_id"])
    epriv, epub = derive_keypair(bytes.fromhex(i["encryption_seed"]))
    assert epub.hex()==i["encryption_public_key"]
    c=frame(bytes.fromhex(i["encryption_key_cert"]),3); assert len(c)==136
    assert c[:32]==pk and c[32:64]==epub and struct.unpack("<Q",c[64:72])[0]==i["encryption_created_at"]
    Ed25519PublicKey.from_public_bytes(pk).verify(c[72:136], ENCRYPTION_KEY_SIGNATURE+c[:72])
    ids[pk]=(name,epriv,epub,sk)
    print("identity", name, "ok")
for case in kat["cases"]:
    fb=bytes.fromhex(case["envelope"]); p=frame(fb,1)
    hdr=p[:124]; sender,recipient,rkey,mid=hdr[:32],hdr[32:64],hdr[64:96],hdr[96:112]
    kind,=struct.unpack("<I",hdr[112:116]); created,=struct.unpack("<Q",hdr[116:124])
    enc=p[124:156]; comm=p[156:188]; n,=struct.unpack("<Q",p[188:196]); ct=p[196:196+n]; sig=p[196+n:]
    assert len(sig)==64
    assert created==case["created_at"] and mid.hex()==case["message_id"]
    cdig=sha(CIPHERTEXT_DIGEST,enc,ct); assert cdig.hex()==case["ciphertext_digest"]
    Ed25519PublicKey.from_public_bytes(sender).verify(sig, ENVELOPE_SIGNATURE+hdr+comm+cdig)
    name,epriv,epub,rsk=ids[recipient]; assert rkey==epub
    pt=hpke_open(epriv, epub, enc, HPKE_INFO, ENVELOPE_AAD+hdr+comm, ct)
    assert sha(BODY_COMMITMENT,pt)==comm and pt.hex()==case["plaintext"]
    bk,=struct.unpack("<I",pt[32:36]); assert bk==kind
    edig=sha(ENVELOPE_DIGEST,fb); assert edig.hex()==case["envelope_digest"]
    r=frame(bytes.fromhex(case["receipt"]),2); assert len(r)==184
    assert r[:32]==sender and r[32:64]==recipient and r[64:80]==mid and r[80:112]==edig
    assert struct.unpack("<Q",r[112:120])[0]==case["receipt_received_at"]
    Ed25519PublicKey.from_public_bytes(recipient).verify(r[120:184], RECEIPT_SIGNATURE+r[:120])
    print("case ok:", case["name"], "kind", kind, "len", len(fb))
# Session frames (docs/protocol.md §8.2, §8.3): u32 BE length, frame header
# type 4, u32 LE variant index; Rejected = 3 with Option<MessageId> (u8 tag,
# then 16 bytes if 1), RejectReason (u32 LE), detail (u64 LE length, UTF-8).
for sf in kat["session_frames"]:
    w=bytes.fromhex(sf["wire"]); n,=struct.unpack(">I",w[:4]); assert n==len(w)-4
    p=frame(w[4:],4); variant,=struct.unpack("<I",p[:4]); assert variant==3; p=p[4:]
    tag=p[0]; p=p[1:]
    if tag==1: mid=p[:16].hex(); p=p[16:]
    else: assert tag==0; mid=None
    assert mid==sf["id"], (mid, sf["id"])
    reason,=struct.unpack("<I",p[:4]); assert reason==sf["reason_index"]
    dl,=struct.unpack("<Q",p[4:12]); assert p[12:].decode()==sf["detail"] and dl==len(p)-12
    print("session frame ok:", sf["name"])

# Restoration statements (docs/audit.md §4.6): node (32), restored_size u64
# LE, restored_root (32), backup_time, restored_at, continuation_size (u64
# LE), continuation_root (32), signed by the node with the domain prefix.
for rs in kat.get("restoration_statements", []):
    si=bytes.fromhex(rs["signing_input"])
    assert si.startswith(RESTORATION_STATEMENT_SIGNATURE)
    st=si[len(RESTORATION_STATEMENT_SIGNATURE):]; assert len(st)==128
    node=st[:32]
    size,=struct.unpack("<Q",st[32:40]); root=st[40:72].hex()
    bt,ra,cs=struct.unpack("<QQQ",st[72:96]); croot=st[96:128].hex()
    assert (size,root,bt,ra,cs,croot)==(rs["restored_size"],rs["restored_root"],rs["backup_time"],rs["restored_at"],rs["continuation_size"],rs["continuation_root"])
    assert node_id(node)==rs["node_id"]
    Ed25519PublicKey.from_public_bytes(node).verify(bytes.fromhex(rs["signature"]), si)
    print("restoration statement ok:", rs["name"])
# Identity transitions (docs/protocol.md §3.4): frame type 7 of old (32),
# new (32), created_at, effective_after (u64 LE), reason (u64 LE length,
# UTF-8), then the old key's and the new key's signatures (64 each), both
# over the domain prefix and the five fields.
for ts in kat.get("transition_statements", []):
    p=frame(bytes.fromhex(ts["framed"]),7)
    old,new=p[:32],p[32:64]
    ca,ea,rl=struct.unpack("<QQQ",p[64:88])
    reason=p[88:88+rl].decode(); rest=p[88+rl:]; assert len(rest)==128
    assert (node_id(old),node_id(new),ca,ea,reason)==(ts["old_node_id"],ts["new_node_id"],ts["created_at"],ts["effective_after"],ts["reason"])
    assert old!=new and ea>=ca and len(reason.encode())<=200
    si=IDENTITY_TRANSITION_SIGNATURE+p[:88+rl]
    Ed25519PublicKey.from_public_bytes(old).verify(rest[:64], si)
    Ed25519PublicKey.from_public_bytes(new).verify(rest[64:], si)
    seed=bytes.fromhex(ts["new_identity_seed"])
    assert Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)==new
    print("transition statement ok:", ts["name"])
# Attachments (docs/protocol.md §11).
def mth(leaves):
    """RFC 6962 Merkle tree hash over leaf hashes: split at the largest power of two below n."""
    n=len(leaves)
    if n==0: return sha(b"")
    if n==1: return leaves[0]
    k=1
    while k*2<n: k*=2
    return sha(b"\x01",mth(leaves[:k]),mth(leaves[k:]))
def u64(b,o): return struct.unpack("<Q",b[o:o+8])[0], o+8
def text(b,o):
    n,o=u64(b,o); return b[o:o+n].decode(), o+n
att=json.load(open(ATT)); a=att["attachment"]; e=att["envelope"]
keys={}
for name,i in att["identities"].items():
    pk=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(i["identity_seed"])).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keys[pk]=derive_keypair(bytes.fromhex(i["encryption_seed"]))
fb=bytes.fromhex(e["envelope"]); p=frame(fb,1)
hdr=p[:124]; sender,recipient,rkey,mid=hdr[:32],hdr[32:64],hdr[64:96],hdr[96:112]
kind,=struct.unpack("<I",hdr[112:116]); assert kind==3  # Reply
enc=p[124:156]; comm=p[156:188]; n,=struct.unpack("<Q",p[188:196]); ct=p[196:196+n]; sig=p[196+n:]
assert len(sig)==64 and mid.hex()==e["message_id"]
cdig=sha(CIPHERTEXT_DIGEST,enc,ct); assert cdig.hex()==e["ciphertext_digest"]
Ed25519PublicKey.from_public_bytes(sender).verify(sig, ENVELOPE_SIGNATURE+hdr+comm+cdig)
epriv,epub=keys[recipient]; assert rkey==epub
pt=hpke_open(epriv, epub, enc, HPKE_INFO, ENVELOPE_AAD+hdr+comm, ct)
# plaintext = committed || keys; committed = salt || body || u64 count || manifests.
committed=bytes.fromhex(e["committed_plaintext"]); lst=bytes.fromhex(a["manifest_list_encoding"])
assert pt.startswith(committed) and committed.endswith(lst)
assert sha(BODY_COMMITMENT,committed)==comm, "commitment covers salt, body and manifests, not the keys"
assert struct.unpack("<I",committed[32:36])[0]==kind
count,o=u64(lst,0); assert count==1
name,o=text(lst,o); mtype,o=text(lst,o); size,o=u64(lst,o)
chunk_size,=struct.unpack("<I",lst[o:o+4]); o+=4
root=lst[o:o+32]; whole=lst[o+32:o+64]; assert o+64==len(lst)
assert (name,mtype,size,chunk_size)==(a["name"],a["media_type"],a["size"],a["chunk_size"])
assert root.hex()==a["tree_root"] and whole.hex()==a["sha256"]
trailer=pt[len(committed):]; assert len(trailer)==39*count
key,prefix=trailer[:32],trailer[32:39]
assert key.hex()==a["content_key"] and prefix.hex()==a["nonce_prefix"]
assert chunk_size==(65536 if size<=64<<20 else 1<<20)
nchunks=max(1,-(-size//chunk_size)); chunks=a["chunks"]; assert len(chunks)==nchunks
table=bytes.fromhex(a["chunk_table"]); assert len(table)==32*nchunks
table=[table[i:i+32] for i in range(0,len(table),32)]; assert mth(table)==root
aead=ChaCha20Poly1305(key); aad=bytes.fromhex(a["aad"]); assert aad==ATTACHMENT_CHUNK_AAD
plain=b""; leaves=[]
for i,c in enumerate(chunks):
    last=i==nchunks-1; nonce=prefix+struct.pack(">I",i)+bytes([last])
    assert c["index"]==i and c["last"]==last and c["nonce"]==nonce.hex()
    cc=bytes.fromhex(c["ciphertext"]); assert cc[-16:].hex()==c["tag"]
    m=aead.decrypt(nonce, cc, aad)  # raises InvalidTag unless the tag verifies
    assert len(m)==(chunk_size if not last else size-chunk_size*(nchunks-1))
    leaf=sha(b"\x00",m); assert leaf==table[i] and leaf.hex()==c["leaf_hash"]
    leaves.append(leaf); plain+=m
    # The same bytes with the other last-chunk flag, or at another index, fail.
    for bad in (prefix+struct.pack(">I",i)+bytes([not last]), prefix+struct.pack(">I",i+1)+bytes([last])):
        try: aead.decrypt(bad, cc, aad); raise AssertionError("tag verified under a wrong nonce")
        except InvalidTag: pass
assert len(plain)==size and mth(leaves)==root and sha(plain)==whole
assert plain==bytes(i%251 for i in range(size)), "plaintext rule: byte i is i mod 251"
edig=sha(ENVELOPE_DIGEST,fb); assert edig.hex()==e["envelope_digest"]
r=frame(bytes.fromhex(e["receipt"]),2); assert r[80:112]==edig
Ed25519PublicKey.from_public_bytes(recipient).verify(r[120:184], RECEIPT_SIGNATURE+r[:120])
print("attachment ok:", name, size, "bytes,", nchunks, "chunks, sha256", whole.hex())
