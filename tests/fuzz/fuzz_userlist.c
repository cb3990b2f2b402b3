/* The user file (userlist.txt) parser, and a lookup of every user it returns. */
#include "fuzz.h"

#include "pgtide/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	char *text = (char *)fuzz_dup(data, size);
	if (!text)
		return 0;
	struct auth_userlist ul = {0};
	int line = 0;
	const char *msg = NULL;
	if (auth_userlist_parse(text, size, &ul, &line, &msg)) {
		FUZZ_ASSERT(ul.n == 0 || ul.users != NULL, "users are there when counted");
		for (size_t i = 0; i < ul.n; i++) {
			FUZZ_ASSERT(ul.users[i].name && ul.users[i].secret,
			            "a user has both fields");
			const struct auth_user *u = auth_userlist_find(&ul, ul.users[i].name);
			FUZZ_ASSERT(u != NULL && strcmp(u->name, ul.users[i].name) == 0,
			            "every user parsed is found");
		}
		auth_userlist_free(&ul);
	} else {
		FUZZ_ASSERT(msg != NULL && line >= 1, "a malformed line is named");
	}
	free(text);
	return 0;
}
