"""The stand-in model and OAuth provider scripts/client-gen starts on loopback, and
that checks what it receives:

- GET /v1/models and POST /v1/chat/completions answer only the bearer it knows (the
  scenario's API key, or an access token it issued); a completion echoes the prompt.
- GET /authorize redirects to the exact redirect_uri with a code, for an S256 PKCE
  challenge only; POST /token redeems a code once, only with the verifier of its
  challenge and the same redirect_uri, and issues a refresh token only for
  offline_access asked with prompt=consent (OpenID Connect Core 11).

Usage: client-gen-provider.py PORT API_KEY"""

import base64
import hashlib
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
API_KEY = sys.argv[2]
LOCK = threading.Lock()
CODES = {}  # code -> (challenge, redirect_uri, refresh token issued)
TOKENS = {API_KEY}


def challenge_of(verifier):
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def bearer_ok(self):
        header = self.headers.get("authorization", "")
        with LOCK:
            return header.startswith("Bearer ") and header[len("Bearer "):] in TOKENS

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/v1/models":
            if not self.bearer_ok():
                return self.answer(401, {"error": {"message": "unknown key"}})
            return self.answer(200, {"object": "list", "data": [{"id": "gpt-generated"}]})
        if url.path == "/authorize":
            q = dict(urllib.parse.parse_qsl(url.query))
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return self.answer(400, {"error": "invalid_request"})
            code = secrets.token_urlsafe(16)
            offline = "offline_access" in q.get("scope", "").split() and q.get("prompt") == "consent"
            with LOCK:
                CODES[code] = (q["code_challenge"], q["redirect_uri"], offline)
            target = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
            self.send_response(302)
            self.send_header("location", target)
            self.send_header("content-length", "0")
            self.end_headers()
            return None
        return self.answer(404, {"error": "not_found"})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            with LOCK:
                grant = CODES.pop(form.get("code", ""), None)
            if form.get("grant_type") != "authorization_code" or grant is None:
                return self.answer(400, {"error": "invalid_grant"})
            challenge, redirect_uri, offline = grant
            if form.get("redirect_uri") != redirect_uri or challenge_of(form.get("code_verifier", "")) != challenge:
                return self.answer(400, {"error": "invalid_grant"})
            access = "generated-access-" + secrets.token_urlsafe(16)
            with LOCK:
                TOKENS.add(access)
            body = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
            if offline:
                body["refresh_token"] = "generated-refresh-" + secrets.token_urlsafe(16)
            return self.answer(200, body, [("cache-control", "no-store")])
        if url.path == "/v1/chat/completions":
            if not self.bearer_ok():
                return self.answer(401, {"error": {"message": "unknown key"}})
            request = json.loads(raw or b"{}")
            prompt = request["messages"][-1]["content"]
            return self.answer(200, {
                "id": "chatcmpl-generated",
                "object": "chat.completion",
                "model": request["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"echo: {prompt}"}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
            })
        return self.answer(404, {"error": "not_found"})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
