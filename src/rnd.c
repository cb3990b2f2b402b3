/* Random bytes drawn from OpenSSL's CSPRNG in batches (rnd.h). */
#include "pgtide/rnd.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Process-wide by nature, like OpenSSL's own DRBG state; logins may run on any thread: one lock
 * around the batch (uncontended, tens of instructions). */
static pthread_mutex_t rnd_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t rnd_batch[512];
static size_t rnd_left; /* unused bytes at the start of rnd_batch */

bool rnd_bytes(void *out, size_t n)
{
	if (n > sizeof(rnd_batch) / 4) {
		/* Large requests (none on a hot path) go straight to OpenSSL. */
		if (RAND_bytes(out, (int)n) == 1)
			return true;
		memset(out, 0, n);
		return false;
	}
	pthread_mutex_lock(&rnd_lock);
	if (rnd_left < n) {
		if (RAND_bytes(rnd_batch, sizeof(rnd_batch)) != 1) {
			rnd_left = 0;
			pthread_mutex_unlock(&rnd_lock);
			memset(out, 0, n);
			return false;
		}
		rnd_left = sizeof(rnd_batch);
	}
	rnd_left -= n;
	memcpy(out, rnd_batch + rnd_left, n);
	OPENSSL_cleanse(rnd_batch + rnd_left, n); /* a handed-out byte leaves no copy behind */
	pthread_mutex_unlock(&rnd_lock);
	return true;
}

void rnd_forget(void)
{
	pthread_mutex_lock(&rnd_lock);
	OPENSSL_cleanse(rnd_batch, sizeof(rnd_batch));
	rnd_left = 0;
	pthread_mutex_unlock(&rnd_lock);
}
