/*
 * Random bytes for salts, nonces and cancel keys, from OpenSSL's CSPRNG. RAND_bytes costs
 * thousands of instructions a call whatever the size (a DRBG generate with its cipher set-up),
 * so bytes are drawn a few hundred at a time and handed out once each.
 */
#ifndef PGTIDE_RND_H
#define PGTIDE_RND_H

#include <stdbool.h>
#include <stddef.h>

/* Fills out with n random bytes; false if the CSPRNG failed (out is then zeroed). */
bool rnd_bytes(void *out, size_t n);

/* Drops the bytes drawn but not handed out: call in a child after fork, so that parent and
 * child never hand out the same bytes. */
void rnd_forget(void);

#endif
