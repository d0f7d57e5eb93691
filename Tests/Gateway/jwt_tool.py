#!/usr/bin/python3
"""Tokens and key sets for the gateway tests, made with PyJWT (an implementation independent of the gateway's).

  jwt_tool.py sign ALG KEY CLAIMS_JSON [KID]   KEY: an HMAC secret, or a PEM private key file; prints the token
  jwt_tool.py none CLAIMS_JSON                 prints an unsigned token (alg "none")
  jwt_tool.py jwks PUBLIC_PEM KID ALG          prints a JWKS with that one key
Claims may use "exp_in"/"nbf_in" (seconds from now) instead of "exp"/"nbf".
"""
import json
import sys
import time

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def claims(text):
    out = json.loads(text)
    for relative, absolute in (("exp_in", "exp"), ("nbf_in", "nbf")):
        if relative in out:
            out[absolute] = int(time.time()) + out.pop(relative)
    return out


def main():
    command = sys.argv[1]
    if command == "sign":
        algorithm, key = sys.argv[2], sys.argv[3]
        if not algorithm.startswith("HS"):
            key = open(key).read()
        headers = {"kid": sys.argv[5]} if len(sys.argv) > 5 else None
        print(jwt.encode(claims(sys.argv[4]), key, algorithm=algorithm, headers=headers))
    elif command == "none":
        print(jwt.encode(claims(sys.argv[2]), None, algorithm="none"))
    elif command == "jwks":
        pem, kid, algorithm = open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
        maker = ECAlgorithm if algorithm.startswith("ES") else RSAAlgorithm
        key = json.loads(maker.to_jwk(maker(maker.SHA256).prepare_key(pem)))
        key.update({"kid": kid, "alg": algorithm, "use": "sig"})
        print(json.dumps({"keys": [key]}))


if __name__ == "__main__":
    main()
