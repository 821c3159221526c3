from data_platform.local.journal_api.server import main

main()
