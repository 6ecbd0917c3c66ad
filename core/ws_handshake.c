/*
 * ws_handshake.c - Sec-WebSocket-Key and Sec-WebSocket-Accept (see
 * ws_handshake.h), with libcrypto's SHA-1 and base64.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "ws_handshake.h"

/* The base64 alphabet (RFC 4648 section 4), for checking a client's key. */
static const char km_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int km_ws_key_valid(const char *key)
{
    /* 16 bytes encode to 22 characters and "==". */
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++)
        if (!strchr(km_b64, key[i]) || key[i] == '\0')
            return 0;
    return 1;
}

int km_ws_accept_key(const char *key, char out[KM_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char cat[128];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int n = snprintf(cat, sizeof cat, "%s%s", key, guid);

    /* a valid key is 24 characters; a longer one is cut, as before */
    if (n < 0 || (size_t)n >= sizeof cat)
        n = (int)sizeof cat - 1;
    out[0] = '\0';
    if (!EVP_Digest(cat, (size_t)n, digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
        return -1;
    /* 20 bytes -> 28 characters and a NUL */
    if (EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen) != KM_WS_ACCEPT_LEN) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}
