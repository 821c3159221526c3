from data_platform_dev.journal_api.server import main

main()
