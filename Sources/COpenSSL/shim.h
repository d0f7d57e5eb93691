// The system's OpenSSL (libssl-dev) for the data plane's TLS, with the few helpers that wrap its
// macros and callbacks, which Swift cannot call directly.
#ifndef TRELLIS_COPENSSL_SHIM_H
#define TRELLIS_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

/// Copies the first URI SAN of `cert` into `out` (NUL-terminated); its length, or -1 when it has none that fits.
static inline int trellis_certificate_uri(X509 *cert, char *out, int capacity) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return -1;
    int found = -1;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type != GEN_URI) continue;
        int length = ASN1_STRING_length(name->d.uniformResourceIdentifier);
        if (length >= 0 && length < capacity) {
            memcpy(out, ASN1_STRING_get0_data(name->d.uniformResourceIdentifier), (size_t)length);
            out[length] = 0;
            found = length;
        }
        break;
    }
    GENERAL_NAMES_free(names);
    return found;
}

/// The URI SAN of the peer's verified certificate, as `trellis_certificate_uri`.
static inline int trellis_peer_uri(SSL *ssl, char *out, int capacity) {
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL) return -1;
    int length = trellis_certificate_uri(cert, out, capacity);
    X509_free(cert);
    return length;
}

/// Chain verification plus, where the connection names one (its app data), the peer's expected URI SAN.
static int trellis_verify(int preverified, X509_STORE_CTX *store) {
    if (!preverified) return 0;
    if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const char *expected = ssl == NULL ? NULL : SSL_get_ex_data(ssl, 0);
    if (expected == NULL) return 1;
    char uri[512];
    if (trellis_certificate_uri(X509_STORE_CTX_get_current_cert(store), uri, sizeof uri) < 0 || strcmp(uri, expected) != 0) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_SUBJECT_ISSUER_MISMATCH);
        return 0;
    }
    return 1;
}

/// Offers and accepts only HTTP/1.1 through ALPN (ready for h2 to be added).
static int trellis_select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                               unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    static const unsigned char offered[] = "\x08http/1.1";
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, offered, sizeof offered - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/// A TLS 1.2+ context presenting `cert_pem`/`key_pem` and trusting only the roots in `roots_pem`,
/// which requires a peer certificate (both sides of mutual TLS). NULL on any error.
/// A context with the settings every Trellis TLS connection shares: TLS 1.2 or later, partial
/// writes, no renegotiation, read-ahead.
static inline SSL_CTX *trellis_context_base(const SSL_METHOD *method) {
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    // Read as much as the socket has in one call rather than a record header, then its body.
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}

/// Loads the PEM private key of the certificate already set; 1 when it is that certificate's.
static inline int trellis_use_key(SSL_CTX *ctx, const char *key_pem) {
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    int ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ok;
}

static inline SSL_CTX *trellis_context_new(int server, const char *cert_pem, const char *key_pem, const char *roots_pem) {
    SSL_CTX *ctx = trellis_context_base(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) return NULL;
    int ok = 1;
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    ok = ok && cert != NULL && SSL_CTX_use_certificate(ctx, cert) == 1;
    X509_free(cert);
    BIO_free(bio);
    ok = ok && trellis_use_key(ctx, key_pem);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    bio = BIO_new_mem_buf(roots_pem, -1);
    int roots = 0;
    X509 *root;
    while (bio != NULL && (root = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, root) == 1) roots++;
        X509_free(root);
    }
    ERR_clear_error();
    BIO_free(bio);
    ok = ok && roots > 0;
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), trellis_verify);
    if (server) {
        SSL_CTX_set_alpn_select_cb(ctx, trellis_select_alpn, NULL);
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"trellis", 7);
    } else {
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    }
    return ctx;
}

/// A server context for a public listener: the certificate chain in `chain_pem` (the leaf first)
/// and its key; no client certificate is asked for.
static inline SSL_CTX *trellis_server_context_new(const char *chain_pem, const char *key_pem) {
    SSL_CTX *ctx = trellis_context_base(TLS_server_method());
    if (ctx == NULL) return NULL;
    int ok = 1;
    int certificates = 0;
    BIO *bio = BIO_new_mem_buf(chain_pem, -1);
    X509 *cert;
    while (bio != NULL && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        ok = ok && (certificates == 0 ? SSL_CTX_use_certificate(ctx, cert) : SSL_CTX_add1_chain_cert(ctx, cert)) == 1;
        X509_free(cert);
        certificates++;
    }
    ERR_clear_error();
    BIO_free(bio);
    ok = ok && certificates > 0 && trellis_use_key(ctx, key_pem);
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, trellis_select_alpn, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"trellis-edge", 12);
    return ctx;
}

/// Names the URI SAN the peer must present (a copy is kept with the connection until it is freed).
static inline void trellis_expect_peer(SSL *ssl, const char *uri) {
    SSL_set_ex_data(ssl, 0, uri == NULL ? NULL : OPENSSL_strdup(uri));
}

/// Frees the expected-peer copy and the connection.
static inline void trellis_ssl_free(SSL *ssl) {
    OPENSSL_free(SSL_get_ex_data(ssl, 0));
    SSL_free(ssl);
}

/// The reason of the last TLS error on this thread (empty when none), for logs and metrics.
static inline void trellis_last_error(char *out, int capacity) {
    unsigned long code = ERR_peek_last_error();
    out[0] = 0;
    if (code != 0) ERR_error_string_n(code, out, (size_t)capacity);
    ERR_clear_error();
}

#endif
